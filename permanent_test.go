package pgfast

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestPermanentErrorsFailAtOnce: a wrong password, a missing database and
// sslmode=require against a server without TLS are answers waiting cannot
// fix: Ready returns them at once (the raw driver's first attempt does too),
// with the backend's error reachable and the fix named; queries fail fast
// with it; and the background does not log in again within seconds.
func TestPermanentErrorsFailAtOnce(t *testing.T) {
	srv := server(t)
	cases := []struct {
		name, dsn, state, says string
	}{
		{"wrong password", strings.Replace(srv.DSN(pgtest.ScramUser), "password="+pgtest.ScramPassword, "password=not-it", 1),
			"28P01", "check the password"},
		{"missing database", strings.Replace(srv.DSN(pgtest.TrustUser), "dbname="+pgtest.Database, "dbname=no_such_db", 1),
			"3D000", "database does not exist"},
		{"TLS refused", strings.Replace(srv.DSN(pgtest.TrustUser), "sslmode=disable", "sslmode=require", 1),
			"", "set sslmode=disable or prefer"},
	}
	forEachBackend(t, func(t *testing.T, b backendCase) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				db := openT(t, b, tc.dsn)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				start := time.Now()
				err := Ready(ctx, db)
				took := time.Since(start)
				if err == nil {
					t.Fatal("Ready succeeded")
				}
				if took > time.Second {
					t.Errorf("Ready took %s, want < 1s: %v", took, err)
				}
				if !errors.Is(err, ErrNotReady) || errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Ready: %v, want ErrNotReady without the context's error", err)
				}
				if !strings.Contains(err.Error(), tc.says) {
					t.Errorf("Ready: %q does not say %q", err, tc.says)
				}
				checkBackendError(t, b, err, tc.state)

				// Queries fail fast with it, and start no login.
				dials := ConnectorOf(db).Stats().Dials
				for i := 0; i < 20; i++ {
					qctx, qcancel := context.WithTimeout(context.Background(), time.Second)
					qstart := time.Now()
					_, qerr := db.ExecContext(qctx, "SELECT 1")
					qcancel()
					if qerr == nil || time.Since(qstart) > 100*time.Millisecond {
						t.Fatalf("query %d: %v after %s, want a fast failure", i, qerr, time.Since(qstart))
					}
					checkBackendError(t, b, qerr, tc.state)
					time.Sleep(20 * time.Millisecond)
				}
				if n := ConnectorOf(db).Stats().Dials - dials; n > 0 {
					t.Errorf("%d more login attempts within a second of a permanent error", n)
				}
			})
		}
	})
}

// checkBackendError checks that the backend's own error is reachable in err:
// the SQLSTATE, or lib/pq's TLS error.
func checkBackendError(t *testing.T, b backendCase, err error, state string) {
	t.Helper()
	if state == "" {
		if b.backend == LibPQ && !errors.Is(err, pq.ErrSSLNotSupported) {
			t.Errorf("errors.Is(pq.ErrSSLNotSupported) false for %v", err)
		}
		return
	}
	switch b.backend {
	case PGX:
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != state {
			t.Errorf("errors.As *pgconn.PgError %s: %v", state, err)
		}
	case LibPQ:
		var pqErr *pq.Error
		if !errors.As(err, &pqErr) || string(pqErr.Code) != state {
			t.Errorf("errors.As *pq.Error %s: %v", state, err)
		}
	}
}

// sqlStateError is a server error as a backend reports it.
type sqlStateError string

func (e sqlStateError) Error() string    { return "server error (SQLSTATE " + string(e) + ")" }
func (e sqlStateError) SQLState() string { return string(e) }

// TestPermanentErrorRetriesAtMostThreeTimesAMinute: after a wrong password
// the background tries again at most three times in any minute (account
// lockout, fail2ban), and still picks up the fixed password.
func TestPermanentErrorRetriesAtMostThreeTimesAMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fb := &fakeBackend{}
		var attempts []time.Time
		start := time.Now()
		fb.set(func(context.Context) error {
			attempts = append(attempts, time.Now())
			return fmt.Errorf("pq: could not connect to any of the hosts:\n%w", errors.Join(
				fmt.Errorf("connecting to a:5432: %w", sqlStateError("28P01")),
				fmt.Errorf("connecting to b:5432: %w", sqlStateError("28000"))))
		})
		c := newFakeConnector(t, fb, options{})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := c.Ready(ctx)
		var coded interface{ SQLState() string }
		if !errors.As(err, &coded) || coded.SQLState() != "28P01" || time.Since(start) > time.Second {
			t.Fatalf("Ready: %v after %s", err, time.Since(start))
		}
		// Callers keep asking: no attempt for them.
		for i := 0; i < 300; i++ {
			if _, err := c.Connect(context.Background()); err == nil {
				t.Fatal("Connect succeeded")
			}
			time.Sleep(time.Second)
		}
		synctest.Wait()
		for i := range attempts {
			n := 0
			for _, a := range attempts[i:] {
				if a.Sub(attempts[i]) < time.Minute {
					n++
				}
			}
			if n > 3 {
				t.Fatalf("%d attempts within a minute from %s: %v", n, attempts[i].Sub(start), attempts)
			}
		}
		if len(attempts) < 5 {
			t.Errorf("%d attempts in 5 minutes: the background stopped trying", len(attempts))
		}
		// The password is fixed: picked up by the next attempt.
		fb.set(nil)
		fixed := time.Now()
		ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
		defer cancel2()
		for c.State() != StateReady && ctx2.Err() == nil {
			time.Sleep(time.Second)
		}
		if c.State() != StateReady || time.Since(fixed) > 40*time.Second {
			t.Errorf("state %s %s after the fix", c.State(), time.Since(fixed))
		}
	})
}

// TestPermanentClassification: an error is permanent only when every host's
// answer is; certificate failures are; a refused connection is not.
func TestPermanentClassification(t *testing.T) {
	refused := &DialError{Host: "a", Port: "5432"}
	auth := fmt.Errorf("connecting to a: %w", sqlStateError("28P01"))
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"password", auth, true},
		{"role", sqlStateError("28000"), true},
		{"database", sqlStateError("3D000"), true},
		{"too many clients", sqlStateError("53300"), false},
		{"starting up", sqlStateError("57P03"), false},
		{"every host", errors.Join(auth, fmt.Errorf("b: %w", sqlStateError("3D000"))), true},
		{"one host down", errors.Join(refused, auth), false},
		{"unknown authority", fmt.Errorf("tls: %w", x509.UnknownAuthorityError{}), true},
		{"hostname", &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "x"}}, true},
		{"pgx TLS refused", fmt.Errorf("tls error: %w", errors.New(pgxRefusedTLS)), true},
		{"lib/pq TLS refused", pq.ErrSSLNotSupported, true},
		{"deadline", context.DeadlineExceeded, false},
	}
	for _, tc := range cases {
		a := &pgxAdapter{}
		refusedTLS := func(err error) bool { return a.refusedTLS(err) || (&pqAdapter{}).refusedTLS(err) }
		pe := permanent(tc.err, refusedTLS)
		if (pe != nil) != tc.want {
			t.Errorf("%s: permanent(%v) = %v, want %v", tc.name, tc.err, pe, tc.want)
		}
		if pe != nil && !errors.Is(pe, tc.err) {
			t.Errorf("%s: %v does not wrap %v", tc.name, pe, tc.err)
		}
	}
}

// TestWrongPasswordLoginsInTheServerLog counts, in the server's own log, the
// failed logins of a pool with a wrong password whose application keeps
// querying: one in the first 5 seconds (the next comes 15 s after it).
func TestWrongPasswordLoginsInTheServerLog(t *testing.T) {
	srv := newServer(t, pgtest.Options{Settings: map[string]string{"log_connections": "on"}})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	dsn := strings.Replace(srv.DSN(pgtest.ScramUser), "password="+pgtest.ScramPassword, "password=not-it", 1)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		const failed = `password authentication failed for user "` + pgtest.ScramUser + `"`
		before := strings.Count(srv.Log(), failed)
		db := openT(t, b, dsn)
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
			_, _ = db.Exec("SELECT 1")
			time.Sleep(20 * time.Millisecond)
		}
		if n := strings.Count(srv.Log(), failed) - before; n != 1 {
			t.Errorf("%d failed logins in 5 s, want 1", n)
		}
	})
}
