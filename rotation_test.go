package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// The acceptance test of issue 20's credential hooks: a rotation the way
// secret managers rotate with PostgreSQL (one password per role, so two
// login roles alternate), under load, for every front end side by side
// with the raw driver, on the shared test server.
//
// PGFAST_ROTATION_LONG=1 runs each variant for a minute (rotation every
// 10 s, connection lifetime 5 s) instead of CI's 16 s and 9 s.

// credStore is a secret manager's view of the current login: user and
// password. lag makes the next lag reads still return the previous
// credential (a cache behind the rotation, read after the revocation).
type credStore struct {
	mu                 sync.Mutex
	user, password     string
	oldUser, oldPasswd string
	lag                int
	reads, staleReads  int
}

func (s *credStore) get() (user, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if s.lag > 0 {
		s.lag--
		s.staleReads++
		return s.oldUser, s.oldPasswd
	}
	return s.user, s.password
}

func (s *credStore) set(user, password string, lag int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oldUser, s.oldPasswd = s.user, s.password
	s.user, s.password, s.lag = user, password, lag
}

// serveStale makes the next n reads return the previous credential.
func (s *credStore) serveStale(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lag = n
}

func (s *credStore) pgxHook(_ context.Context, cc *pgx.ConnConfig) error {
	cc.User, cc.Password = s.get()
	return nil
}

func (s *credStore) pqHook(_ context.Context, cfg *pq.Config) error {
	cfg.User, cfg.Password = s.get()
	return nil
}

// rotationFront is one front end under test: its roles, its credentials,
// its workers' query and what it counted.
type rotationFront struct {
	name   string
	fast   bool // a pgfast front end (the acceptance criteria apply)
	roles  [2]string
	active int // index of the role the store hands out
	store  *credStore

	query func(ctx context.Context) error
	held  func(ctx context.Context) error // a query on a connection made before the first rotation
	close func()

	queries, failed atomic.Int64
	firstErr        atomic.Pointer[error]
	failMu          sync.Mutex
	failTimes       []time.Time

	// states the connector went through after its first Ready, with when.
	stMu     sync.Mutex
	states   []State
	notReady time.Duration // longest time not Ready
	leftAt   time.Time     // when it last left Ready
}

func (f *rotationFront) onState(st State, _ error) {
	f.stMu.Lock()
	defer f.stMu.Unlock()
	f.states = append(f.states, st)
	switch {
	case st != StateReady && f.leftAt.IsZero():
		f.leftAt = time.Now()
	case st == StateReady && !f.leftAt.IsZero():
		f.notReady = max(f.notReady, time.Since(f.leftAt))
		f.leftAt = time.Time{}
	}
}

func (f *rotationFront) resetStates() {
	f.stMu.Lock()
	defer f.stMu.Unlock()
	f.states, f.notReady, f.leftAt = nil, 0, time.Time{}
}

// failedLogins counts the server's refusals of the front's roles so far.
func (f *rotationFront) failedLogins(log string) int {
	n := 0
	for _, r := range f.roles {
		n += strings.Count(log, fmt.Sprintf("password authentication failed for user %q", r))
	}
	return n
}

func TestCredentialRotation(t *testing.T) {
	srv := server(t)
	long := os.Getenv("PGFAST_ROTATION_LONG") == "1"
	for _, v := range []struct {
		name     string
		revoked  bool // the old password is changed at once and the store lags one read
		dur, per time.Duration
	}{
		{"graceful", false, 16 * time.Second, 4 * time.Second},
		{"revoked at once", true, 9 * time.Second, 3 * time.Second},
	} {
		if long {
			v.dur, v.per = time.Minute, 10*time.Second
		}
		t.Run(v.name, func(t *testing.T) { runRotation(t, srv, v.revoked, v.dur, v.per) })
	}
}

func runRotation(t *testing.T, srv *pgtest.Server, revoked bool, dur, period time.Duration) {
	const workers = 10
	lifetime := period / 2
	stamp := time.Now().UnixNano() % 1e8
	fronts := []*rotationFront{
		{name: "raw pgx"}, {name: "pgfast", fast: true}, {name: "pgfast-pq", fast: true},
		{name: "raw pgxpool"}, {name: "NewPool", fast: true},
	}
	var ddl strings.Builder
	ddl.WriteString("SET password_encryption = 'scram-sha-256';\n")
	for i, f := range fronts {
		for j := range f.roles {
			f.roles[j] = fmt.Sprintf("pgfast_rot%d_%d_%d", stamp, i, j)
			fmt.Fprintf(&ddl, "CREATE ROLE %s LOGIN PASSWORD 'gen0-%d';\nGRANT CONNECT ON DATABASE %s TO %s;\n", f.roles[j], j, pgtest.Database, f.roles[j])
		}
		f.store = &credStore{}
		f.store.set(f.roles[0], "gen0-0", 0)
	}
	if err := srv.Exec(ddl.String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, f := range fronts {
			for _, r := range f.roles {
				_ = srv.Exec("DROP ROLE IF EXISTS " + r)
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), dur+30*time.Second)
	defer cancel()
	dsn := func(f *rotationFront) string { // no password: the hook supplies it
		return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable connect_timeout=10", srv.Host(), srv.Port(), f.roles[0], pgtest.Database)
	}
	sqlFront := func(f *rotationFront, db *sql.DB, c *Connector) {
		db.SetMaxOpenConns(workers + 1)
		db.SetMaxIdleConns(workers + 1)
		db.SetConnMaxLifetime(lifetime)
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		f.query = func(ctx context.Context) error { _, err := db.ExecContext(ctx, "select 1"); return err }
		f.held = func(ctx context.Context) error { _, err := conn.ExecContext(ctx, "select 1"); return err }
		f.close = func() {
			_ = conn.Close()
			_ = db.Close()
			if c != nil {
				_ = c.Close()
			}
		}
	}
	poolFront := func(f *rotationFront, fast bool) {
		cfg, err := pgxpool.ParseConfig(dsn(f))
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxConns = workers + 1
		cfg.MaxConnLifetime, cfg.MaxConnLifetimeJitter = lifetime, 0
		cfg.BeforeConnect = f.store.pgxHook
		var p *pgxpool.Pool
		if fast {
			p, err = NewPoolWithConfig(ctx, cfg, WithStateHook(f.onState))
		} else {
			p, err = pgxpool.NewWithConfig(ctx, cfg)
		}
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		if fast {
			if err := PoolConnector(p).Ready(ctx); err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
		}
		conn, err := p.Acquire(ctx)
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		f.query = func(ctx context.Context) error { _, err := p.Exec(ctx, "select 1"); return err }
		f.held = func(ctx context.Context) error { _, err := conn.Exec(ctx, "select 1"); return err }
		f.close = func() { conn.Release(); p.Close() }
	}
	for _, f := range fronts {
		switch f.name {
		case "raw pgx":
			cc, err := pgx.ParseConfig(dsn(f))
			if err != nil {
				t.Fatal(err)
			}
			sqlFront(f, stdlib.OpenDB(*cc, stdlib.OptionBeforeConnect(f.store.pgxHook)), nil)
		case "pgfast":
			cc, err := pgx.ParseConfig(dsn(f))
			if err != nil {
				t.Fatal(err)
			}
			c, err := NewConnectorFromConfig(cc, WithOpenDBOptions(stdlib.OptionBeforeConnect(f.store.pgxHook)), WithStateHook(f.onState))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Ready(ctx); err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
			sqlFront(f, sql.OpenDB(c), c)
		case "pgfast-pq":
			c, err := NewConnector(dsn(f), WithBackend(LibPQ), WithPQBeforeConnect(f.store.pqHook), WithStateHook(f.onState))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Ready(ctx); err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
			sqlFront(f, sql.OpenDB(c), c)
		case "raw pgxpool":
			poolFront(f, false)
		case "NewPool":
			poolFront(f, true)
		}
		defer f.close()
	}
	logBefore := srv.Log()
	for _, f := range fronts {
		f.resetStates()
	}

	// The workers.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, f := range fronts {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					qctx, qcancel := context.WithTimeout(ctx, 15*time.Second) // a loaded CI machine is slow, not a failure
					err := f.query(qctx)
					qcancel()
					f.queries.Add(1)
					if err != nil {
						f.failed.Add(1)
						f.firstErr.CompareAndSwap(nil, &err)
						f.failMu.Lock()
						f.failTimes = append(f.failTimes, time.Now())
						f.failMu.Unlock()
					}
					time.Sleep(20 * time.Millisecond) // about 50 queries a second each: load, not a CPU benchmark
				}
			}()
		}
	}

	// The rotations: a new password on the idle role, the store switched to
	// it, then the old role's password changed (revoked) after a grace; or
	// at once, and the store's next read still returns the revoked
	// credential (a cache behind the rotation).
	rotations := 0
	var rotatedAt []time.Time
	start := time.Now()
	for next := start.Add(period); next.Before(start.Add(dur)); next = next.Add(period) {
		time.Sleep(time.Until(next))
		rotations++
		rotatedAt = append(rotatedAt, time.Now())
		pw := fmt.Sprintf("gen%d", rotations)
		var set, revoke strings.Builder
		set.WriteString("SET password_encryption = 'scram-sha-256';\n")
		revoke.WriteString("SET password_encryption = 'scram-sha-256';\n")
		for _, f := range fronts {
			fmt.Fprintf(&set, "ALTER ROLE %s PASSWORD '%s';\n", f.roles[1-f.active], pw)
			fmt.Fprintf(&revoke, "ALTER ROLE %s PASSWORD 'revoked-%d';\n", f.roles[f.active], rotations)
		}
		if err := srv.Exec(set.String()); err != nil {
			t.Fatal(err)
		}
		for _, f := range fronts {
			f.active = 1 - f.active
			f.store.set(f.roles[f.active], pw, 0)
		}
		if !revoked {
			time.Sleep(period / 4) // logins that read the old credential finish
		}
		if err := srv.Exec(revoke.String()); err != nil {
			t.Fatal(err)
		}
		if revoked {
			for _, f := range fronts {
				f.store.serveStale(1)
			}
		}
	}
	time.Sleep(time.Until(start.Add(dur)))
	close(stop)
	wg.Wait()
	log := srv.Log()
	if len(log) >= len(logBefore) {
		log = log[len(logBefore):]
	}

	for _, f := range fronts {
		hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
		heldErr := f.held(hctx)
		hcancel()
		f.store.mu.Lock()
		reads, stale := f.store.reads, f.store.staleReads
		f.store.mu.Unlock()
		f.stMu.Lock()
		states, notReady := f.states, f.notReady
		f.stMu.Unlock()
		logins := f.failedLogins(log)
		var first error
		if p := f.firstErr.Load(); p != nil {
			first = *p
		}
		t.Logf("%-11s %d rotations in %s (lifetime %s): %d queries, %d failed, %d failed logins, %d hook calls (%d stale), states %v (longest not Ready %s), held connection: %v; first error: %v",
			f.name, rotations, dur, lifetime, f.queries.Load(), f.failed.Load(), logins, reads, stale, states, notReady, heldErr, first)
		if !f.fast {
			continue
		}
		if heldErr != nil {
			t.Errorf("%s: the connection made before the rotations failed: %v", f.name, heldErr)
		}
		if reads < rotations*2 {
			t.Errorf("%s: %d hook calls in %d rotations: the connection lifetime made too few logins to test anything", f.name, reads, rotations)
		}
		if !revoked {
			if logins > rotations {
				t.Errorf("%s: %d failed logins in %d rotations, want at most one each", f.name, logins, rotations)
			}
			if f.failed.Load() != 0 {
				t.Errorf("%s: %d failed queries (first: %v), want 0", f.name, f.failed.Load(), first)
			}
			if len(states) != 0 {
				t.Errorf("%s: left Ready during the rotations: %v", f.name, states)
			}
			continue
		}
		// Revoked at once: logins in flight with the old credential fail,
		// whatever the driver, and one more reads it from the lagging
		// store. The next attempt must serve: no wait of 15-30 s (the
		// connector stays Ready), and no failures once the logins that
		// read the old credential ended (connect_timeout). A database/sql
		// caller's dial is retried with a fresh credential, so at most the
		// login that read the stale credential on its retry fails. A
		// pool's Acquire fails with its login, as raw pgxpool's does; more
		// of them than raw (the pool's burst of new connections read the
		// credential before queueing for admission): logged, not judged.
		if notReady > time.Second {
			t.Errorf("%s: not Ready for %s after a revoked credential, want the next attempt to recover", f.name, notReady)
		}
		if f.name != "NewPool" && f.failed.Load() > int64(rotations) {
			t.Errorf("%s: %d failed queries in %d rotations (first: %v), want at most one each", f.name, f.failed.Load(), rotations, first)
		}
		f.failMu.Lock()
		for _, ft := range f.failTimes {
			var since time.Duration = -1
			for _, r := range rotatedAt {
				if !ft.Before(r) {
					since = ft.Sub(r)
				}
			}
			if since < 0 || since > 10*time.Second { // connect_timeout
				t.Errorf("%s: a query failed %s after the latest rotation, want the recovery within the next attempt", f.name, since)
			}
		}
		f.failMu.Unlock()
	}
}
