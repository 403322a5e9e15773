package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestPQRowsForwardResultTag: rows from pgfast-pq's driver-level queries
// forward lib/pq's Result and Tag (lib/pq's TestRowsResultTag panicked), with
// the same answers as raw lib/pq.
func TestPQRowsForwardResultTag(t *testing.T) {
	srv := server(t)
	queries := []string{
		"CREATE TEMP TABLE temp (a int)",
		"INSERT INTO temp VALUES (1), (2)",
		"SELECT 1",
		"SELECT 1; INSERT INTO temp VALUES (1), (2)",
		"INSERT INTO temp VALUES (1), (2); SELECT 1",
		"CREATE TEMP TABLE t (a int); DROP TABLE t",
	}
	type answer struct {
		tag string
		ra  int64
	}
	answers := map[string][]answer{}
	for _, name := range []string{pqCase().raw, pqCase().name} {
		db, err := sql.Open(name, srv.DSN(pgtest.TrustUser))
		if err != nil {
			t.Fatal(err)
		}
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		err = conn.Raw(func(dc any) error {
			q := dc.(driver.QueryerContext)
			for _, query := range queries {
				rows, err := q.QueryContext(context.Background(), query, nil)
				if err != nil {
					return err
				}
				rt, ok := rows.(resultTagger)
				if !ok {
					rows.Close()
					return errors.New(name + ": rows have no Result/Tag")
				}
				ra, _ := rt.Result().RowsAffected()
				answers[name] = append(answers[name], answer{rt.Tag(), ra})
				rows.Close()
			}
			return nil
		})
		conn.Close()
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	raw, got := answers[pqCase().raw], answers[pqCase().name]
	for i, q := range queries {
		if raw[i] != got[i] {
			t.Errorf("%q: pgfast-pq %+v, raw lib/pq %+v", q, got[i], raw[i])
		}
	}
}

// TestPQErrorIdentityAfterInterrupt: on a connection a context interrupted
// (the network went silent, the cancel request got no answer), a
// transaction's Rollback returns driver.ErrBadConn and rows.Close returns the
// context's error, compared with ==, as raw lib/pq returns them on a
// connection a context ended; rows.Next's error still satisfies errors.Is
// with the context's error.
func TestPQErrorIdentityAfterInterrupt(t *testing.T) {
	srv := server(t)
	leakCheck(t)
	target := net.JoinHostPort(srv.Host(), strconv.Itoa(srv.Port()))
	run := func(t *testing.T, f func(pc *PQConn, proxy *silentProxy) error) {
		proxy := newSilentProxy(t, target)
		db := openT(t, pqCase(), proxy.dsn())
		readyT(t, db, 10*time.Second)
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.Raw(func(dc any) error { return f(dc.(*PQConn), proxy) }); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("tx.Rollback", func(t *testing.T) {
		run(t, func(pc *PQConn, proxy *silentProxy) error {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			tx, err := pc.BeginTx(ctx, driver.TxOptions{})
			if err != nil {
				return err
			}
			proxy.silent.Store(true)
			_, err = pc.ExecContext(context.Background(), "SELECT pg_sleep(30)", nil)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("exec: %v, want context.DeadlineExceeded", err)
			}
			if err := tx.Rollback(); err != driver.ErrBadConn {
				t.Errorf("Rollback = %#v, want driver.ErrBadConn", err)
			}
			return nil
		})
	})
	t.Run("rows.Close", func(t *testing.T) {
		run(t, func(pc *PQConn, proxy *silentProxy) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rows, err := pc.QueryContext(ctx, "SELECT repeat('x', 1000) FROM generate_series(1, 100) UNION ALL SELECT pg_sleep(30)::text", nil)
			if err != nil {
				return err
			}
			dest := make([]driver.Value, 1)
			if err := rows.Next(dest); err != nil {
				return err
			}
			proxy.silent.Store(true)
			time.AfterFunc(100*time.Millisecond, cancel)
			err = nil
			for i := 0; i < 200 && err == nil; i++ { // the rows already sent, then the blocked one
				err = rows.Next(dest)
			}
			if !errors.Is(err, context.Canceled) || err == io.EOF {
				t.Errorf("Next = %v, want context.Canceled", err)
			}
			if err := rows.Close(); err != context.Canceled {
				t.Errorf("Close = %#v, want context.Canceled", err)
			}
			return nil
		})
	})
}
