package pgfast

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/testkit"
)

// These tests run pgxpool's own BeforeConnect, the way applications supply
// short-lived credentials (IAM tokens): a DSN without a password and a hook
// that sets it, against a SCRAM role. Raw pgxpool and pgfast's pool run side
// by side on the same configuration.

// scramDSNWithoutPassword is the SCRAM role's DSN with its password taken out.
func scramDSNWithoutPassword(srv *pgtest.Server) string {
	return strings.Replace(srv.DSN(pgtest.ScramUser), " password="+pgtest.ScramPassword, "", 1)
}

// TestPoolBeforeConnectSetsPassword: the application's BeforeConnect sets the
// password. Raw pgxpool serves; pgfast's pool must serve too, report Ready,
// and its own probes must log in with the hook's password (no failed login).
func TestPoolBeforeConnectSetsPassword(t *testing.T) {
	srv := server(t)
	cfg, err := pgxpool.ParseConfig(scramDSNWithoutPassword(srv))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConnConfig.Password != "" {
		t.Fatal("the DSN still has a password (PGPASSWORD or a password file?)")
	}
	var probeCalls, poolCalls atomic.Int64
	cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		if netx.IsNoSkip(ctx) {
			probeCalls.Add(1)
		} else {
			poolCalls.Add(1)
		}
		cc.Password = pgtest.ScramPassword
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	raw, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(ctx, "select 1"); err != nil {
		t.Fatalf("raw pgxpool: %v", err)
	}

	p, err := NewPoolWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := PoolConnector(p)
	// Ready first: only the connector's own probes can make it Ready here.
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("pgfast Ready: %v", err)
	}
	if probeCalls.Load() == 0 {
		t.Error("the connector's probes did not run the application's BeforeConnect")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n int
			if err := p.QueryRow(ctx, "select 1 from pg_sleep(0.05)").Scan(&n); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("pgfast query: %v", err)
	}
	if st := c.Stats(); st.State != StateReady || st.DialFailures != 0 {
		t.Errorf("state %s, %d failed logins (last: %v), want ready and none", st.State, st.DialFailures, st.LastError)
	}
}

// errTokenService is a credential hook's own failure.
var errTokenService = errors.New("token service unavailable")

// tokenHook is a BeforeConnect that sets password, or fails (as a token
// service that timed out does, quoting the token it last had) while failing
// is set.
type tokenHook struct {
	password string
	failing  atomic.Bool
	calls    atomic.Int64
}

func (h *tokenHook) before(ctx context.Context, cc *pgx.ConnConfig) error {
	h.calls.Add(1)
	cc.Password = h.password
	if h.failing.Load() {
		return fmt.Errorf("refreshing token %s: %w: %w", h.password, errTokenService, os.ErrDeadlineExceeded)
	}
	return nil
}

// checkHookError checks that err is the hook's failure, wrapped, and that no
// error of its chain quotes the password.
func checkHookError(t *testing.T, what string, err error, password string) {
	t.Helper()
	if !errors.Is(err, errTokenService) {
		t.Errorf("%s: %v, want the hook's error wrapped", what, err)
	}
	for e := err; e != nil; {
		if strings.Contains(e.Error(), password) {
			t.Errorf("%s: the password shows in %T: %q", what, e, e.Error())
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			e = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				checkChainClean(t, what, x, password)
			}
			e = nil
		default:
			e = nil
		}
	}
}

func checkChainClean(t *testing.T, what string, err error, password string) {
	t.Helper()
	if err == nil {
		return
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("%s: the password shows in %T: %q", what, err, err.Error())
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		checkChainClean(t, what, u.Unwrap(), password)
	case interface{ Unwrap() []error }:
		for _, x := range u.Unwrap() {
			checkChainClean(t, what, x, password)
		}
	}
}

// TestPoolBeforeConnectErrorIsNotEvidence: a BeforeConnect that fails fails
// that attempt with its error wrapped (the password it quotes scrubbed), and
// says nothing about the server: the state does not move because of it and
// nothing is evicted, whether the pool is still connecting or Ready.
func TestPoolBeforeConnectErrorIsNotEvidence(t *testing.T) {
	srv := server(t)
	cfg, err := pgxpool.ParseConfig(scramDSNWithoutPassword(srv))
	if err != nil {
		t.Fatal(err)
	}
	h := &tokenHook{password: pgtest.ScramPassword}
	h.failing.Store(true)
	cfg.BeforeConnect = h.before
	p, err := NewPoolWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := PoolConnector(p)

	// Connecting: the hook fails every attempt, the probes' included.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err = c.Ready(ctx)
	cancel()
	checkHookError(t, "Ready", err, h.password)
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	_, err = p.Exec(ctx, "select 1")
	cancel()
	checkHookError(t, "Exec", err, h.password)
	if st := c.Stats(); st.State != StateConnecting || st.StateChanges != 0 || st.Evictions != 0 {
		t.Errorf("after failed hooks: state %s, %d changes, %d evictions; want connecting, 0, 0 (last: %v)",
			st.State, st.StateChanges, st.Evictions, st.LastError)
	}

	// The hook works again: Ready.
	h.failing.Store(false)
	poolReadyT(t, p, 10*time.Second)

	// Ready: new connections fail in the hook, the state stays Ready.
	h.failing.Store(true)
	before := c.Stats()
	p.Reset()
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := p.Exec(ctx, "select 1")
		cancel()
		checkHookError(t, "Exec while Ready", err, h.password)
	}
	time.Sleep(300 * time.Millisecond) // let the connector's goroutine apply what it was told
	if st := c.Stats(); st.State != StateReady || st.StateChanges != before.StateChanges || st.Evictions != before.Evictions {
		t.Errorf("after failed hooks while Ready: state %s, %d changes (was %d), %d evictions (was %d)",
			st.State, st.StateChanges, before.StateChanges, st.Evictions, before.Evictions)
	}
	h.failing.Store(false)
	if _, err := p.Exec(context.Background(), "select 1"); err != nil {
		t.Errorf("Exec once the hook works: %v", err)
	}
}

// hookGoroutines counts the goroutines inside a test hook named fn.
func hookGoroutines(fn string) int {
	return strings.Count(testkit.Stacks(), fn)
}

// blockingHookName is in the stack of a goroutine inside blockingHook.
const blockingHookName = ".blockingHook.func"

// blockingHook ignores its context until release is closed.
func blockingHook(release <-chan struct{}, calls *atomic.Int64) func(context.Context, *pgx.ConnConfig) error {
	return func(context.Context, *pgx.ConnConfig) error {
		calls.Add(1)
		<-release
		return nil
	}
}

// TestPoolBeforeConnectIgnoringContextIsAbandoned: a BeforeConnect that never
// looks at its context is abandoned at the attempt's deadline
// (connect_timeout): the attempt fails, the pool does not hang, and the
// goroutine it ran in ends when the hook returns.
func TestPoolBeforeConnectIgnoringContextIsAbandoned(t *testing.T) {
	srv := server(t)
	cfg, err := pgxpool.ParseConfig(withKV(srv.DSN(pgtest.TrustUser), "connect_timeout=1"))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	released := false
	var calls atomic.Int64
	cfg.BeforeConnect = blockingHook(release, &calls)
	p, err := NewPoolWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	defer func() { // before p.Close, which waits for the pool's attempts
		if !released {
			close(release)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	_, err = p.Exec(ctx, "select 1")
	took := time.Since(t0)
	if err == nil || took > 2500*time.Millisecond {
		t.Fatalf("Exec with a hook that ignores its context: %v after %s, want a failure within connect_timeout", err, took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		t.Errorf("Exec: %v, want the attempt's deadline (not the caller's)", err)
	}
	if !strings.Contains(err.Error(), "BeforeConnect") {
		t.Errorf("Exec: %q does not name the hook", err)
	}
	if calls.Load() == 0 || hookGoroutines(blockingHookName) == 0 {
		t.Fatalf("%d hook calls, %d hooks running: the test did not exercise the hook\n%s", calls.Load(), hookGoroutines(blockingHookName), testkit.Stacks())
	}
	if st := PoolConnector(p).State(); st == StateDown {
		t.Errorf("state %s after a hook timeout, want no change", st)
	}
	p.Close()
	close(release)
	released = true
	if !testkit.WaitFor(5*time.Second, func() bool { return hookGoroutines(blockingHookName) == 0 }) {
		t.Errorf("%d hook goroutines left after the hooks returned", hookGoroutines(blockingHookName))
	}
}

// rotatingToken stands for a credential source whose cache lags a rotation:
// after rotate, the next stale calls still return the old credential.
type rotatingToken struct {
	mu         sync.Mutex
	cur, old   string
	stale      int
	staleGiven int
	calls      int
	probes     int // calls for pgfast's own attempts (netx.IsNoSkip)
}

// take is the credential for one login.
func (r *rotatingToken) take(ctx context.Context) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if netx.IsNoSkip(ctx) {
		r.probes++
	}
	if r.stale > 0 {
		r.stale--
		r.staleGiven++
		return r.old
	}
	return r.cur
}

func (r *rotatingToken) before(ctx context.Context, cc *pgx.ConnConfig) error {
	cc.Password = r.take(ctx)
	return nil
}

func (r *rotatingToken) rotate(to string, stale int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.old, r.cur, r.stale = r.cur, to, stale
}

// hookRole creates a SCRAM login role of the test's own (its password is
// changed by the test) on the shared server.
func hookRole(t *testing.T, srv *pgtest.Server, password string) string {
	t.Helper()
	role := fmt.Sprintf("pgfast_hook_%d", time.Now().UnixNano()%1e9)
	if err := srv.Exec(fmt.Sprintf(`SET password_encryption = 'scram-sha-256';
CREATE ROLE %s LOGIN PASSWORD '%s';
GRANT CONNECT ON DATABASE %s TO %s;`, role, password, pgtest.Database, role)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Exec("DROP ROLE IF EXISTS " + role) })
	return role
}

// TestPoolBeforeConnectFreshCredentialAfterRotation: the password changes on
// the server and the hook's next credential is still the old one (a cache
// that lags the rotation) before it gets the new one. The login that fails
// with 28P01 used the hook: the verdict does not hold back the next attempt,
// which calls the hook again and serves within a second, as raw pgxpool's
// next Acquire does (not 15 s later).
func TestPoolBeforeConnectFreshCredentialAfterRotation(t *testing.T) {
	srv := server(t)
	role := hookRole(t, srv, "tok-v1")
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", srv.Host(), srv.Port(), role, pgtest.Database)
	for _, kind := range []string{"raw", "pgfast"} {
		t.Run(kind, func(t *testing.T) {
			if err := srv.Exec(fmt.Sprintf("SET password_encryption = 'scram-sha-256'; ALTER ROLE %s PASSWORD 'tok-v1'", role)); err != nil {
				t.Fatal(err)
			}
			cfg, err := pgxpool.ParseConfig(dsn)
			if err != nil {
				t.Fatal(err)
			}
			tok := &rotatingToken{cur: "tok-v1"}
			cfg.BeforeConnect = tok.before
			var p *pgxpool.Pool
			if kind == "raw" {
				p, err = pgxpool.NewWithConfig(context.Background(), cfg)
			} else {
				p, err = NewPoolWithConfig(context.Background(), cfg)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := p.Exec(ctx, "select 1"); err != nil {
				t.Fatalf("before the rotation: %v", err)
			}
			if err := srv.Exec(fmt.Sprintf("ALTER ROLE %s PASSWORD 'tok-v2'", role)); err != nil {
				t.Fatal(err)
			}
			tok.rotate("tok-v2", 1)
			p.Reset() // new logins from now on
			rotated := time.Now()
			var last error
			for time.Since(rotated) < 5*time.Second {
				qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
				_, last = p.Exec(qctx, "select 1")
				qcancel()
				if last == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if last != nil || time.Since(rotated) > 2*time.Second {
				t.Fatalf("%s after the rotation: %v, want serving within 2s", time.Since(rotated), last)
			}
			if kind == "pgfast" {
				if st := PoolConnector(p).State(); st != StateReady {
					t.Errorf("state %s after the rotation", st)
				}
			}
			tok.mu.Lock()
			defer tok.mu.Unlock()
			if tok.staleGiven != 1 {
				t.Errorf("%d logins with the old credential, want 1", tok.staleGiven)
			}
		})
	}
}

// TestPoolBeforeConnectWrongPasswordStillPaced: a hook whose password is
// wrong for good is still a permanent error: Ready says so within a second,
// and the application's queries (failing fast) make at most 3 logins fail in
// the first seconds (the retry with a fresh credential included).
func TestPoolBeforeConnectWrongPasswordStillPaced(t *testing.T) {
	srv := server(t)
	cfg, err := pgxpool.ParseConfig(scramDSNWithoutPassword(srv))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	cfg.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
		calls.Add(1)
		cc.Password = "not-the-password"
		return nil
	}
	p, err := NewPoolWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	err = PoolConnector(p).Ready(ctx)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" || time.Since(t0) > time.Second {
		t.Fatalf("Ready: %v after %s, want 28P01 within a second", err, time.Since(t0))
	}
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		qctx, qcancel := context.WithTimeout(ctx, time.Second)
		_, _ = p.Exec(qctx, "select 1")
		qcancel()
		time.Sleep(20 * time.Millisecond)
	}
	if n := calls.Load(); n > 3 {
		t.Errorf("%d logins in the first 4 s with a wrong password, want at most 3", n)
	}
}
