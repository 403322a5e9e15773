//go:build linux

package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pgfast/pgfast/internal/diag"
	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/testkit"
)

// These tests read the TCP options back from the sockets under real
// PostgreSQL connections (shared server, no fault namespace), for both
// backends: what internal/netx/sys_linux_test.go proves for the dialer alone must hold
// for every connection database/sql gets from pgfast.

// sockoptPGConns takes n connections from db at the same time (so that, with
// the default pgfast_min_conns=1, the first is the warm connection the
// background goroutine dialed and the others are dialed on demand) and
// returns the socket options of each.
func sockoptPGConns(t *testing.T, db *sql.DB, n int) []diag.SocketOptions {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []diag.SocketOptions
	for i := range n {
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatalf("db.Conn #%d: %v", i, err)
		}
		defer conn.Close() // held until all are read: n distinct connections
		err = conn.Raw(func(dc any) error {
			nc := socketOf(dc.(driver.Conn))
			if nc == nil {
				return fmt.Errorf("socketOf(%T) = nil: pgfast does not know this connection's socket", dc)
			}
			opts, err := netx.ReadSocketOptions(nc)
			if err != nil {
				return err
			}
			out = append(out, opts)
			return nil
		})
		if err != nil {
			t.Fatalf("connection #%d: %v", i, err)
		}
	}
	return out
}

func TestSockoptPGRealConnections(t *testing.T) {
	srv := server(t)
	osDefault := diag.SocketOptions{
		KeepalivesIdle:     time.Duration(testkit.Sysctl(t, "tcp_keepalive_time")) * time.Second,
		KeepalivesInterval: time.Duration(testkit.Sysctl(t, "tcp_keepalive_intvl")) * time.Second,
		KeepalivesCount:    testkit.Sysctl(t, "tcp_keepalive_probes"),
	}
	cases := []struct {
		name string
		kv   []string
		want diag.SocketOptions
	}{
		{
			// TCP_USER_TIMEOUT is not set by default: it would abort a
			// zero-window stall (a lock wait); the dead-peer watcher
			// tells a silent server from a slow one instead.
			name: "defaults",
			want: diag.SocketOptions{Keepalive: true, KeepalivesIdle: 10 * time.Second, KeepalivesInterval: 5 * time.Second, KeepalivesCount: 3},
		},
		{
			name: "dsn values",
			kv:   []string{"keepalives_idle=7", "keepalives_interval=3", "keepalives_count=4", "tcp_user_timeout=9000"},
			want: diag.SocketOptions{Keepalive: true, KeepalivesIdle: 7 * time.Second, KeepalivesInterval: 3 * time.Second, KeepalivesCount: 4, TCPUserTimeout: 9 * time.Second},
		},
		{
			// Keep-alives off: SO_KEEPALIVE off, the timings left at the
			// kernel's values (neither pgfast's nor Go's 15 s), and
			// TCP_USER_TIMEOUT still set when asked for: it is independent
			// of keep-alives.
			name: "keepalives=0",
			kv:   []string{"keepalives=0", "tcp_user_timeout=25000"},
			want: diag.SocketOptions{Keepalive: false, KeepalivesIdle: osDefault.KeepalivesIdle, KeepalivesInterval: osDefault.KeepalivesInterval, KeepalivesCount: osDefault.KeepalivesCount, TCPUserTimeout: 25 * time.Second},
		},
	}
	forEachBackend(t, func(t *testing.T, b backendCase) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				dsn := srv.DSN(pgtest.TrustUser)
				if len(tc.kv) > 0 {
					dsn = withKV(dsn, tc.kv...)
				}
				db := openT(t, b, dsn)
				readyT(t, db, 10*time.Second)
				for i, got := range sockoptPGConns(t, db, 2) {
					which := "warm (background) connection"
					if i > 0 {
						which = "connection dialed on demand"
					}
					if got != tc.want {
						t.Errorf("%s: read back %+v\nwant %+v", which, got, tc.want)
					}
				}
			})
		}
	})
}

// sockoptPGResolver is a Resolver that counts lookups.
type sockoptPGResolver struct{ lookups atomic.Int64 }

func (r *sockoptPGResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.lookups.Add(1)
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}

// TestSockoptPGCancelRequestUsesPgfastDialer proves that the connection a
// backend opens to send a CancelRequest is dialed by pgfast (resolution,
// address racing, socket options), not by the backend's default dialer.
//
// pgx only sends a CancelRequest when asked (PgConn.CancelRequest): its
// default reaction to a cancelled context is to expire the socket's deadline
// (DeadlineContextWatcherHandler), which dials nothing. lib/pq sends one
// whenever a query's context ends.
func TestSockoptPGCancelRequestUsesPgfastDialer(t *testing.T) {
	srv := server(t)

	t.Run("pgfast cancels a running query", func(t *testing.T) {
		db := openT(t, backends[0], srv.DSN(pgtest.TrustUser))
		readyT(t, db, 10*time.Second)
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		var cancelErr error
		err = conn.Raw(func(dc any) error {
			pc := dc.(*stdlib.Conn).Conn().PgConn()
			done := make(chan struct{})
			go func() {
				defer close(done)
				time.Sleep(200 * time.Millisecond)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				cancelErr = pc.CancelRequest(ctx)
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_, err := pc.Exec(ctx, "SELECT pg_sleep(10)").ReadAll()
			<-done
			return err
		})
		elapsed := time.Since(start)
		if cancelErr != nil {
			t.Fatalf("CancelRequest: %v", cancelErr)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("query: got %v, want 57014 query_canceled", err)
		}
		if elapsed > 5*time.Second {
			t.Fatalf("cancelled query returned after %v", elapsed)
		}
	})

	t.Run("pgfast cancel dial error is a DialError", func(t *testing.T) {
		// A server of our own, stopped under a live connection: the
		// CancelRequest dial is refused, and the error type says who dialed.
		own := newServer(t, pgtest.Options{})
		if err := own.Start(); err != nil {
			t.Fatal(err)
		}
		dsn := own.DSN(pgtest.TrustUser)
		// Both connections exist before the server stops.
		type pending struct {
			name string
			send func() error
		}
		var sends []pending
		for _, name := range []string{"pgfast", "pgx"} {
			db, err := sql.Open(name, dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			conn, err := db.Conn(ctx)
			cancel()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			t.Cleanup(func() { conn.Close() })
			var pc *pgconn.PgConn
			if err := conn.Raw(func(dc any) error { pc = dc.(*stdlib.Conn).Conn().PgConn(); return nil }); err != nil {
				t.Fatal(err)
			}
			sends = append(sends, pending{name, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return pc.CancelRequest(ctx)
			}})
		}
		if err := own.Stop(); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("127.0.0.1:%d", own.Port())
		for _, s := range sends {
			err := s.send()
			var de *DialError
			switch s.name {
			case "pgfast":
				if !errors.As(err, &de) {
					t.Fatalf("pgfast CancelRequest: got %T %v, want a *pgfast.DialError (the cancel connection was not dialed by pgfast)", err, err)
				}
				if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "refused") {
					t.Errorf("pgfast CancelRequest error %q does not name %s as refused", err, want)
				}
				t.Logf("pgfast CancelRequest after server stop: %v", err)
			case "pgx":
				if err == nil || errors.As(err, &de) {
					t.Fatalf("control: raw pgx CancelRequest gave %T %v, want a plain dial error", err, err)
				}
				t.Logf("control: raw pgx CancelRequest after server stop: %T %v", err, err)
			}
		}
	})

	t.Run("pgfast-pq cancel on context end dials through pgfast", func(t *testing.T) {
		// pgfast-pq sends the cancel request itself, to the address the
		// connection's socket is connected to, through the core's dial
		// function: wrapping that function (options.testDial) and counting
		// the dials made outside a lib/pq Connect call (those carry a dial
		// record) counts the cancel dials only. Whether the query itself
		// returns when its context ends or only once the server cancelled
		// it is pgfast-pq's
		// business (pq_cancel.go): this only proves where the cancel
		// connection came from and that the server got it. The unique sleep
		// length marks the statement in the server log.
		r := &sockoptPGResolver{}
		dsn := fmt.Sprintf("host=localhost port=%d user=%s dbname=%s sslmode=disable pgfast_dns_recheck=0", srv.Port(), pgtest.TrustUser, pgtest.Database)
		var cancelDials atomic.Int64
		countCancels := func(dial dialFunc) dialFunc {
			return func(ctx context.Context, network, address string) (net.Conn, error) {
				if _, connect := ctx.Value(dialRecordKey{}).(*dialRecord); !connect {
					cancelDials.Add(1)
				}
				return dial(ctx, network, address)
			}
		}
		c, err := newConnector(dsn, options{backend: LibPQ, resolver: r, testDial: countCancels})
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(c)
		defer db.Close()
		readyT(t, db, 10*time.Second)
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		before := cancelDials.Load()
		marker := fmt.Sprintf("pg_sleep(10.%06d)", time.Now().Nanosecond()/1000)

		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = conn.ExecContext(ctx, "SELECT "+marker)
		elapsed := time.Since(start)
		if err == nil {
			t.Fatalf("query with a 300ms context succeeded after %v", elapsed)
		}
		if elapsed > 5*time.Second {
			t.Fatalf("cancelled query returned after %v", elapsed)
		}
		t.Logf("query returned after %v: %v", elapsed.Round(time.Millisecond), err)

		// Wait for the dial and for the server's record of the cancellation.
		cancelled := func() bool {
			log := srv.Log()
			i := strings.LastIndex(log, "STATEMENT:  SELECT "+marker)
			return i >= 0 && strings.Contains(log[max(0, i-300):i], "canceling statement due to user request")
		}
		deadline := time.Now().Add(5 * time.Second)
		for (cancelDials.Load() <= before || !cancelled()) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		after := cancelDials.Load()
		if after <= before {
			t.Errorf("pgfast's dial function saw no dial (%d → %d) after the context ended: the cancel connection did not go through pgfast's dialer", before, after)
		}
		if !cancelled() {
			t.Errorf("the server log does not show SELECT %s cancelled by a cancel request", marker)
		}
		t.Logf("cancel dials %d → %d; server cancelled the statement: %v", before, after, cancelled())
	})
}
