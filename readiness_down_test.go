package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Attempts that fail while Down (a probe refused with 53300, say) must not
// move the point answered I/O counts from (netx.AnsweredSince keys on the
// failure count): a connection that answered a request made since Down
// began proves the server.
func TestRepeatedFailuresWhileDownKeepAnsweredIO(t *testing.T) {
	r := newReadiness()
	r.set(StateDown, errors.New("refused"), false)
	downBegan := r.failures()
	r.set(StateDown, errors.New("53300 too many connections"), false)
	if r.failures() != downBegan {
		t.Fatal("a failed attempt while already Down moved the point answered I/O counts from")
	}
	r.set(StateReady, nil, false)
	r.set(StateDown, errors.New("refused again"), false)
	if r.failures() == downBegan {
		t.Fatal("a new Down did not move the point answered I/O counts from")
	}
}

// Found from outside: a role at its connection limit refuses every probe
// (53300) while the sessions already open answer every query; an
// application querying every few seconds stayed Down for good, because each
// failed probe reset every connection's evidence. Raw drivers just serve.
func TestDownEndsWhileProbesAreRefusedButSessionsAnswer(t *testing.T) {
	srv := server(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			role := map[Backend]string{PGX: "lim_pgx", LibPQ: "lim_pq"}[b.backend]
			_ = srv.Exec("DROP ROLE IF EXISTS " + role)
			if err := srv.Exec(fmt.Sprintf("SET password_encryption = 'scram-sha-256'; CREATE ROLE %s LOGIN PASSWORD 'limpw' CONNECTION LIMIT 3", role)); err != nil {
				t.Fatal(err)
			}
			c, err := NewConnector(srv.DSN(role)+" password=limpw", WithBackend(b.backend))
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(c)
			defer db.Close()
			db.SetMaxOpenConns(2)
			db.SetMaxIdleConns(2)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			c1, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c2, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = c1.Close()
			_ = c2.Close()
			// Hold the role to the sessions it has now: every probe from here
			// on is refused with 53300.
			time.Sleep(500 * time.Millisecond) // the connector's warm connection
			out, err := srv.Query("SELECT count(*) FROM pg_stat_activity WHERE usename = '" + role + "'")
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Exec(fmt.Sprintf("ALTER ROLE %s CONNECTION LIMIT %s", role, strings.TrimSpace(out))); err != nil {
				t.Fatal(err)
			}
			c.post(event{kind: evDialFailed, err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}})
			waitFor(t, c, StateDown, 2*time.Second)
			for i := 0; i < 4; i++ {
				var n int
				if err := db.QueryRowContext(ctx, "select 1").Scan(&n); err != nil {
					t.Fatalf("query %d: %v", i, err)
				}
				if i >= 1 && c.State() == StateReady {
					return
				}
				// Another attempt fails before the next query, as the refused
				// probes do every second or two.
				c.post(event{kind: evDialFailed, err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}})
				time.Sleep(300 * time.Millisecond)
			}
			t.Fatalf("every query answered but the connector is %v: %v", c.State(), c.Stats().LastError)
		})
	}
}
