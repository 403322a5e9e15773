package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/testkit"
)

// These tests check the pgx backend's internal before-connect hook (what a
// pool's BeforeConnect becomes, and what a database/sql option can expose
// later) on the database/sql path: every connection the connector makes
// runs it.

// newHookConnectorT starts a pgx connector on dsn whose connections run hook.
func newHookConnectorT(t *testing.T, dsn string, hook beforeConnectFunc, o options) *Connector {
	t.Helper()
	a, cfg, err := parseDSN(PGX, dsn)
	if err != nil {
		t.Fatal(err)
	}
	a.(*pgxAdapter).before = hook
	c, err := newConnectorWith(a, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestBeforeConnectHookDriverPath: the connector's probes, its warm
// connections and callers' dials all run the hook, each on a copy of its
// own (a change to RuntimeParams reaches the server and nothing else).
func TestBeforeConnectHookDriverPath(t *testing.T) {
	srv := server(t)
	var calls, probes atomic.Int64
	hook := func(ctx context.Context, cc *pgx.ConnConfig) error {
		n := calls.Add(1)
		if netx.IsNoSkip(ctx) {
			probes.Add(1)
		}
		cc.Password = pgtest.ScramPassword
		cc.RuntimeParams["application_name"] = fmt.Sprintf("hooked-%d", n)
		return nil
	}
	c := newHookConnectorT(t, scramDSNWithoutPassword(srv), hook, options{minConns: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if !testkit.WaitFor(5*time.Second, func() bool { return c.Stats().WarmIdle == 2 }) {
		t.Errorf("%d warm connections, want 2", c.Stats().WarmIdle)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	db.SetMaxIdleConns(0) // a caller's dial after the warm ones
	for range 4 {
		var name string
		if err := db.QueryRowContext(ctx, "select current_setting('application_name')").Scan(&name); err != nil {
			t.Fatalf("query: %v", err)
		}
		if !strings.HasPrefix(name, "hooked-") {
			t.Errorf("application_name %q, want the hook's", name)
		}
	}
	// The first probe and one warming dial are the warm pair; two queries
	// took them, two dialled.
	if probes.Load() < 2 || calls.Load()-probes.Load() < 2 {
		t.Errorf("%d hook calls, %d of them probes: want every connection to run it", calls.Load(), probes.Load())
	}
	if _, ok := c.adapter.(*pgxAdapter).cfg.RuntimeParams["application_name"]; ok {
		t.Error("the hook's change reached the connector's own configuration")
	}
	if st := c.Stats(); st.DialFailures != 0 {
		t.Errorf("%d failed logins (last %v)", st.DialFailures, st.LastError)
	}
}

// TestBeforeConnectHookErrorDriverPath: while Ready, a caller's dial whose
// hook fails gets the hook's error (the password scrubbed) and the state does
// not move; a role verification whose hook fails evicts nothing.
func TestBeforeConnectHookErrorDriverPath(t *testing.T) {
	srv := server(t)
	h := &tokenHook{password: pgtest.ScramPassword}
	c := newHookConnectorT(t, scramDSNWithoutPassword(srv), h.before, options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	kept, err := c.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	before := c.Stats()

	h.failing.Store(true)
	_, err = c.Connect(ctx)
	checkHookError(t, "Connect", err, h.password)

	// A role verification of kept's address, whose fresh connection fails
	// in the hook.
	nc := c.adapter.socket(kept)
	g, ok := netx.GenOf(nc)
	if !ok {
		t.Fatal("no tracked socket")
	}
	c.verifyRole(nc, errors.New("test: is it still the primary?"))
	verifying := func() bool { return c.book.Verifying(g.Addr) }
	if !testkit.WaitFor(5*time.Second, func() bool { return !verifying() }) {
		t.Fatal("the role verification did not end")
	}
	time.Sleep(200 * time.Millisecond) // let the connector's goroutine apply what it was told
	if st := c.Stats(); st.State != StateReady || st.StateChanges != before.StateChanges || st.Evictions != before.Evictions {
		t.Errorf("after failed hooks: state %s, %d changes (was %d), %d evictions (was %d)",
			st.State, st.StateChanges, before.StateChanges, st.Evictions, before.Evictions)
	}
}

// TestRunBeforeBoundsAndScrubs checks runBefore alone: the hook's changes
// land on the attempt's configuration only when it returns nil; its error is
// wrapped without any spelling of the password; a hook that ignores its
// context is abandoned at the bound or when the caller's context ends, and
// what it writes afterwards reaches nobody.
func TestRunBeforeBoundsAndScrubs(t *testing.T) {
	base, err := pgx.ParseConfig("host=127.0.0.1 user=u dbname=d application_name=orig")
	if err != nil {
		t.Fatal(err)
	}
	const pw = `p@ss/w?rd "Secret" ü it's\x`
	sentinel := errors.New("hook said no")

	t.Run("changes", func(t *testing.T) {
		a := &pgxAdapter{before: func(_ context.Context, cc *pgx.ConnConfig) error {
			cc.Password = pw
			cc.RuntimeParams["application_name"] = "mine"
			return nil
		}}
		cc := *base // stdlib's shallow copy: RuntimeParams is shared with base
		if err := a.runBefore(context.Background(), &cc, time.Second); err != nil {
			t.Fatal(err)
		}
		if cc.Password != pw || cc.RuntimeParams["application_name"] != "mine" {
			t.Errorf("the hook's changes are lost: %q %v", cc.Password, cc.RuntimeParams)
		}
		if base.RuntimeParams["application_name"] != "orig" || base.Password != "" {
			t.Errorf("the hook changed the shared configuration: %v", base.RuntimeParams)
		}
	})

	t.Run("error", func(t *testing.T) {
		jsonPW, _ := json.Marshal(pw)
		for _, quoted := range []string{pw, url.QueryEscape(pw), url.PathEscape(pw), fmt.Sprintf("%q", pw),
			string(jsonPW), url.UserPassword("u", pw).String(), strconv.QuoteToASCII(pw),
			"password='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw) + "'"} {
			a := &pgxAdapter{before: func(_ context.Context, cc *pgx.ConnConfig) error {
				cc.Password = pw
				cc.RuntimeParams["application_name"] = "mine"
				return fmt.Errorf("token %s refused: %w", quoted, sentinel)
			}}
			cc := base.Copy()
			err := a.runBefore(context.Background(), cc, time.Second)
			if !errors.Is(err, sentinel) || !hookFailed(err) {
				t.Errorf("%v: want the hook's error wrapped", err)
			}
			for _, form := range spellingsOf([]string{pw}) {
				checkChainClean(t, "runBefore", err, form)
			}
			if cc.Password != "" || cc.RuntimeParams["application_name"] != "orig" {
				t.Error("a failed hook's changes reached the attempt's configuration")
			}
		}
	})

	t.Run("abandoned", func(t *testing.T) {
		release := make(chan struct{})
		returned := make(chan struct{})
		a := &pgxAdapter{before: func(_ context.Context, cc *pgx.ConnConfig) error {
			defer close(returned)
			<-release
			cc.Password = pw // after the attempt gave up: must reach nobody
			return nil
		}}
		cc := base.Copy()
		t0 := time.Now()
		err := a.runBefore(context.Background(), cc, 100*time.Millisecond)
		if took := time.Since(t0); took > time.Second || !errors.Is(err, context.DeadlineExceeded) || !hookFailed(err) {
			t.Errorf("runBefore: %v after %s, want the bound's deadline", err, took)
		}
		if !strings.Contains(err.Error(), "connect_timeout (100ms)") {
			t.Errorf("runBefore: %q does not say which bound", err)
		}
		close(release)
		<-returned
		if cc.Password != "" {
			t.Error("an abandoned hook's write reached the attempt's configuration")
		}

		// The caller's context ends first.
		release2 := make(chan struct{})
		defer close(release2)
		a.before = func(context.Context, *pgx.ConnConfig) error { <-release2; return nil }
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		t0 = time.Now()
		err = a.runBefore(ctx, base.Copy(), time.Minute)
		if took := time.Since(t0); took > time.Second || !errors.Is(err, context.Canceled) {
			t.Errorf("runBefore with a cancelled context: %v after %s", err, took)
		}
	})

	t.Run("no hook", func(t *testing.T) {
		if err := (&pgxAdapter{}).runBefore(context.Background(), base.Copy(), 0); err != nil {
			t.Error(err)
		}
	})
}

// newFakeHookConnector is newFakeConnector with a before-connect hook
// declared on the pgx adapter (the fake backend never runs it).
func newFakeHookConnector(t *testing.T, fb *fakeBackend) *Connector {
	t.Helper()
	a, cfg, err := parseDSN(PGX, fakeDSN)
	if err != nil {
		t.Fatal(err)
	}
	a.(*pgxAdapter).before = func(context.Context, *pgx.ConnConfig) error { return nil }
	c, err := newConnectorWith(a, cfg, options{testBackend: func(core) driver.Connector { return fb }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFreshCredentialRetryPaced: with a before-connect hook, a failed login
// of the pool's own (one, or several at once) is followed by one attempt at
// once, which serves if the hook's next credential works, the connector
// staying Ready meanwhile; if the password is
// wrong for good, callers that keep asking still see at most three failed
// logins in any minute, the first one included.
func TestFreshCredentialRetryPaced(t *testing.T) {
	authErr := fmt.Errorf("connecting to a:5432: %w", sqlStateError("28P01"))
	for _, tc := range []struct {
		name  string
		batch int  // pool logins failing at once
		cured bool // the retry's credential works
	}{
		{"one failure, cured", 1, true},
		{"five at once, cured", 5, true},
		{"wrong for good", 1, false},
		{"five at once, wrong for good", 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fb := &fakeBackend{}
				c := newFakeHookConnector(t, fb)
				defer c.Close()
				waitFor(t, c, StateReady, time.Second)
				var mu sync.Mutex
				var attempts []time.Time
				fb.set(func(context.Context) error {
					mu.Lock()
					defer mu.Unlock()
					attempts = append(attempts, time.Now())
					if tc.cured {
						return nil
					}
					return authErr
				})
				t0 := time.Now()
				changes := c.Stats().StateChanges
				for range tc.batch {
					c.post(event{kind: evDialFailed, err: authErr})
				}
				if tc.cured {
					time.Sleep(time.Second)
					synctest.Wait()
					if c.State() != StateReady || len(attempts) != 1 {
						t.Fatalf("state %s with %d attempts a second after the failed login, want ready after 1", c.State(), len(attempts))
					}
					// Ready throughout: a credential the retry cured says
					// nothing about the database, and the failures that
					// came with the first wait for the retry.
					if n := c.Stats().StateChanges - changes; n != 0 {
						t.Errorf("%d state changes, want Ready throughout", n)
					}
					return
				}
				for time.Since(t0) < 5*time.Minute {
					_, _ = c.Connect(context.Background())
					time.Sleep(100 * time.Millisecond)
				}
				synctest.Wait()
				mu.Lock()
				defer mu.Unlock()
				if len(attempts) == 0 || attempts[0].Sub(t0) > time.Second {
					t.Fatalf("no attempt within a second of the failed login: %v", attempts)
				}
				logins := append([]time.Time{t0}, attempts...)
				for i := range logins {
					n := 0
					for _, a := range logins[i:] {
						if a.Sub(logins[i]) < time.Minute {
							n++
						}
					}
					if n > 3 {
						t.Fatalf("%d failed logins within a minute from %s: %v", n, logins[i].Sub(t0), logins)
					}
				}
				if len(attempts) < 5 {
					t.Errorf("%d attempts in 5 minutes: the background stopped trying", len(attempts))
				}
				if perm, _ := c.ready.failedPermanently(); !perm {
					t.Errorf("state %s, not permanent, after the retry failed too", c.State())
				}
			})
		})
	}
}

// A hook that panics (pgxpool's own TestConstructorIgnoresContext has one
// that calls a func variable set only after NewWithConfig returns) fails the
// attempt pgfast makes with it; it does not end the process.
func TestRunBeforeHookPanicFailsTheAttempt(t *testing.T) {
	var cancel func()
	a := &pgxAdapter{before: func(context.Context, *pgx.ConnConfig) error {
		cancel() // nil: panics
		return nil
	}}
	cc, err := pgx.ParseConfig("host=127.0.0.1 password=hunter2")
	if err != nil {
		t.Fatal(err)
	}
	err = a.runBefore(context.Background(), cc, time.Second)
	if err == nil || !hookFailed(err) || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("runBefore with a panicking hook: %v, want the hook's failure saying it panicked", err)
	}
}
