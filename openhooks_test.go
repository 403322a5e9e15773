package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/testkit"
)

// TestHookOptionsRefused: the hook options a front end cannot run are a
// *ConfigError at construction, not silently dropped.
func TestHookOptionsRefused(t *testing.T) {
	const dsn = "host=127.0.0.1 port=1 user=u dbname=d connect_timeout=1"
	openDB := WithOpenDBOptions(stdlib.OptionAfterConnect(func(context.Context, *pgx.Conn) error { return nil }))
	pqBefore := WithPQBeforeConnect(func(context.Context, *pq.Config) error { return nil })
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		make func() error
		key  string
	}{
		{"lib/pq with OptionOpenDB", func() error { _, err := NewConnector(dsn, WithBackend(LibPQ), openDB); return err }, "WithOpenDBOptions"},
		{"pgx with WithPQBeforeConnect", func() error { _, err := NewConnector(dsn, pqBefore); return err }, "WithPQBeforeConnect"},
		{"ConnConfig with WithPQBeforeConnect", func() error { _, err := NewConnectorFromConfig(cc, pqBefore); return err }, "WithPQBeforeConnect"},
		{"NewPool with OptionOpenDB", func() error { _, err := NewPool(context.Background(), dsn, openDB); return err }, "WithOpenDBOptions"},
		{"NewPool with WithPQBeforeConnect", func() error { _, err := NewPool(context.Background(), dsn, pqBefore); return err }, "WithPQBeforeConnect"},
		{"an empty WithOpenDBOptions on lib/pq", func() error { _, err := NewConnector(dsn, WithBackend(LibPQ), WithOpenDBOptions()); return err }, "WithOpenDBOptions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.make()
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("%v, want a *ConfigError about %s", err, tc.key)
			}
		})
	}
	for _, opts := range [][]Option{{openDB}, {WithBackend(LibPQ), pqBefore}} {
		c, err := NewConnector(dsn, opts...)
		if err != nil {
			t.Errorf("a matching backend is refused: %v", err)
			continue
		}
		_ = c.Close()
	}
}

// TestReadOpenDBOptions: every stdlib.OptionOpenDB is read back as the
// function given, the last of a kind winning as in stdlib.OpenDB; pgx's
// no-op defaults read as none.
func TestReadOpenDBOptions(t *testing.T) {
	h, err := readOpenDBOptions(nil)
	if err != nil || h.before != nil || h.after != nil || h.reset != nil || h.shouldPing != nil {
		t.Fatalf("no options: %+v, %v; want no hooks", h, err)
	}
	var got []string
	h, err = readOpenDBOptions([]stdlib.OptionOpenDB{
		stdlib.OptionBeforeConnect(func(context.Context, *pgx.ConnConfig) error { got = append(got, "before1"); return nil }),
		stdlib.OptionBeforeConnect(func(context.Context, *pgx.ConnConfig) error { got = append(got, "before2"); return nil }),
		stdlib.OptionAfterConnect(func(context.Context, *pgx.Conn) error { got = append(got, "after"); return nil }),
		stdlib.OptionResetSession(func(context.Context, *pgx.Conn) error { got = append(got, "reset"); return nil }),
		stdlib.OptionShouldPing(func(context.Context, stdlib.ShouldPingParams) bool { got = append(got, "ping"); return true }),
	})
	if err != nil {
		t.Fatal(err)
	}
	if h.before == nil || h.after == nil || h.reset == nil || h.shouldPing == nil {
		t.Fatalf("hooks lost: %+v", h)
	}
	_ = h.before(context.Background(), nil)
	_ = h.after(context.Background(), nil)
	_ = h.reset(context.Background(), nil)
	_ = h.shouldPing(context.Background(), stdlib.ShouldPingParams{})
	if strings.Join(got, ",") != "before2,after,reset,ping" {
		t.Errorf("called %v", got)
	}
}

// openDBPair opens the same configuration raw (stdlib.OpenDB) and through
// pgfast (WithOpenDBOptions), with the same options.
func openDBPair(t *testing.T, dsn string, opts ...stdlib.OptionOpenDB) (raw, fast *sql.DB, c *Connector) {
	t.Helper()
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	raw = stdlib.OpenDB(*cc, opts...)
	t.Cleanup(func() { _ = raw.Close() })
	c, err = NewConnectorFromConfig(cc, WithOpenDBOptions(opts...))
	if err != nil {
		t.Fatal(err)
	}
	fast = sql.OpenDB(c)
	t.Cleanup(func() { _ = fast.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return raw, fast, c
}

// TestOpenDBShouldPingAndResetSessionOnReuse is pgx's
// TestOptionShouldPing_HookCalledOnReuse and TestResetSessionHookCalled, raw
// and through pgfast: both hooks run when a connection is reused.
func TestOpenDBShouldPingAndResetSessionOnReuse(t *testing.T) {
	srv := server(t)
	var pings, resets [2]atomic.Int64
	for i, kind := range []string{"raw", "pgfast"} {
		raw, fast, _ := openDBPair(t, srv.DSN(pgtest.ScramUser),
			stdlib.OptionShouldPing(func(context.Context, stdlib.ShouldPingParams) bool { pings[i].Add(1); return false }),
			stdlib.OptionResetSession(func(context.Context, *pgx.Conn) error { resets[i].Add(1); return nil }))
		db := map[string]*sql.DB{"raw": raw, "pgfast": fast}[kind]
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		if err := db.Ping(); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec("select 1"); err != nil {
			t.Fatal(err)
		}
		if pings[i].Load() == 0 || resets[i].Load() == 0 {
			t.Errorf("%s: ShouldPing called %d times, ResetSession %d: want both on reuse", kind, pings[i].Load(), resets[i].Load())
		}
	}
}

// TestOpenDBHooksKeepPgfastCheck: with the application's ShouldPing saying
// "no ping" and a ResetSession of its own, a connection whose backend was
// terminated while idle fails raw pgx's next query (nothing checks it);
// through pgfast, its checkout check still runs first, discards it, and the
// query runs on a new connection. Appending the options to pgfast's would
// have replaced that check.
func TestOpenDBHooksKeepPgfastCheck(t *testing.T) {
	srv := server(t)
	var userResets atomic.Int64
	raw, fast, _ := openDBPair(t, srv.DSN(pgtest.ScramUser),
		stdlib.OptionShouldPing(func(context.Context, stdlib.ShouldPingParams) bool { return false }),
		stdlib.OptionResetSession(func(context.Context, *pgx.Conn) error { userResets.Add(1); return nil }))
	for _, kind := range []string{"raw", "pgfast"} {
		db := map[string]*sql.DB{"raw": raw, "pgfast": fast}[kind]
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		var pid int
		if err := db.QueryRow("select pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		if err := srv.Exec(fmt.Sprintf("select pg_terminate_backend(%d)", pid)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // the FIN arrives
		resets := userResets.Load()
		var again int
		err := db.QueryRow("select pg_backend_pid()").Scan(&again)
		switch {
		case kind == "raw":
			t.Logf("raw pgx after its idle connection's backend was terminated: %v", err)
		case err != nil:
			t.Errorf("pgfast: %v, want the query on a new connection", err)
		case again == pid:
			t.Errorf("pgfast: the terminated backend %d answered", pid)
		case userResets.Load() != resets:
			t.Errorf("pgfast: the application's ResetSession ran on a connection pgfast's check found dead")
		}
	}
}

// TestOpenDBAfterAndBeforeConnect: OptionBeforeConnect supplies the
// password (the DSN has none) and OptionAfterConnect prepares each session,
// for pgfast's own connections (the probe's warm connection) and callers'
// dials alike, as raw pgx does for its dials.
func TestOpenDBAfterAndBeforeConnect(t *testing.T) {
	srv := server(t)
	var befores, probes, afters atomic.Int64
	raw, fast, c := openDBPair(t, scramDSNWithoutPassword(srv),
		stdlib.OptionBeforeConnect(func(ctx context.Context, cc *pgx.ConnConfig) error {
			befores.Add(1)
			if netx.IsNoSkip(ctx) {
				probes.Add(1)
			}
			cc.Password = pgtest.ScramPassword
			return nil
		}),
		stdlib.OptionAfterConnect(func(ctx context.Context, conn *pgx.Conn) error {
			afters.Add(1)
			_, err := conn.Exec(ctx, "set application_name = 'after-connect'")
			return err
		}))
	for _, kind := range []string{"pgfast", "raw"} { // pgfast first: its query takes the probe's connection
		db := map[string]*sql.DB{"raw": raw, "pgfast": fast}[kind]
		db.SetMaxIdleConns(0) // every query logs in
		for range 3 {
			var name string
			if err := db.QueryRow("select current_setting('application_name')").Scan(&name); err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
			if name != "after-connect" {
				t.Errorf("%s: application_name %q, want AfterConnect's", kind, name)
			}
		}
	}
	if probes.Load() == 0 || afters.Load() < befores.Load()-1 {
		t.Errorf("%d BeforeConnect calls (%d probes), %d AfterConnect", befores.Load(), probes.Load(), afters.Load())
	}
	if st := c.Stats(); st.DialFailures != 0 || st.State != StateReady {
		t.Errorf("pgfast: %s, %d failed dials (%v)", st.State, st.DialFailures, st.LastError)
	}
}

// TestOpenDBAfterConnectErrorIsNotEvidence: a failing AfterConnect fails the
// caller's Connect with its error (no spelling of the password), closes the
// connection, and changes nothing in the connector's state.
func TestOpenDBAfterConnectErrorIsNotEvidence(t *testing.T) {
	srv := server(t)
	var failing atomic.Bool
	cc, err := pgx.ParseConfig(srv.DSN(pgtest.ScramUser))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConnectorFromConfig(cc, WithOpenDBOptions(stdlib.OptionAfterConnect(func(_ context.Context, conn *pgx.Conn) error {
		if failing.Load() {
			return fmt.Errorf("session setup with %s: %w", conn.Config().Password, errTokenService)
		}
		return nil
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	for dc := c.takeWarm(); dc != nil; dc = c.takeWarm() {
		_ = dc.Close()
	}
	before := c.Stats()
	failing.Store(true)
	_, err = c.Connect(ctx)
	checkHookError(t, "Connect", err, pgtest.ScramPassword)
	time.Sleep(200 * time.Millisecond)
	if st := c.Stats(); st.State != StateReady || st.StateChanges != before.StateChanges {
		t.Errorf("after a failed AfterConnect: %s, %d state changes (was %d)", st.State, st.StateChanges, before.StateChanges)
	}
}

// pqToken is rotatingToken as lib/pq's hook.
type pqToken struct{ rotatingToken }

func (r *pqToken) before(ctx context.Context, cfg *pq.Config) error {
	cfg.Password = r.take(ctx)
	return nil
}

// TestPQBeforeConnect: lib/pq's hook supplies the password for the probe,
// the warm connections and callers' dials; what it changes in pgfast's
// settings (the host) is put back; its error fails the attempt, scrubbed,
// and moves nothing.
func TestPQBeforeConnect(t *testing.T) {
	srv := server(t)
	tok := &pqToken{rotatingToken{cur: pgtest.ScramPassword}}
	var failing atomic.Bool
	hook := func(ctx context.Context, cfg *pq.Config) error {
		if err := tok.before(ctx, cfg); err != nil {
			return err
		}
		cfg.ApplicationName = "pq-hooked"
		cfg.Host = "203.0.113.1" // pgfast's: put back
		if failing.Load() {
			return fmt.Errorf("token %s: %w", cfg.Password, errTokenService)
		}
		return nil
	}
	c, err := NewConnector(scramDSNWithoutPassword(srv), WithBackend(LibPQ), WithPQBeforeConnect(hook), WithMinConns(2))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	db.SetMaxIdleConns(0)
	for range 4 {
		var name string
		if err := db.QueryRowContext(ctx, "select current_setting('application_name')").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if name != "pq-hooked" {
			t.Errorf("application_name %q, want the hook's", name)
		}
	}
	tok.mu.Lock()
	if tok.probes == 0 || tok.calls < 4 {
		t.Errorf("%d hook calls, %d of them probes", tok.calls, tok.probes)
	}
	tok.mu.Unlock()
	before := c.Stats()
	if before.DialFailures != 0 {
		t.Errorf("%d failed dials (%v)", before.DialFailures, before.LastError)
	}
	for dc := c.takeWarm(); dc != nil; dc = c.takeWarm() {
		_ = dc.Close()
	}
	failing.Store(true)
	_, err = c.Connect(ctx)
	checkHookError(t, "Connect", err, pgtest.ScramPassword)
	time.Sleep(200 * time.Millisecond)
	if st := c.Stats(); st.State != StateReady || st.StateChanges != before.StateChanges || st.Evictions != before.Evictions {
		t.Errorf("after a failed hook: %s, %d changes (was %d)", st.State, st.StateChanges, before.StateChanges)
	}
}

// TestFreshCredentialCallerDial (issue 20 item 2, database/sql): the
// password is rotated on the server and the hook's next credential is still
// the old one. Raw pgx's next query fails with 28P01 (its next one logs in);
// through pgfast, on both backends, the caller's dial logs in once more at
// once with the hook's next credential: the query succeeds, the connector
// stays Ready, and exactly one login used the old credential.
func TestFreshCredentialCallerDial(t *testing.T) {
	srv := server(t)
	role := hookRole(t, srv, "tok-v1")
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", srv.Host(), srv.Port(), role, pgtest.Database)
	setPassword := func(pw string) {
		t.Helper()
		if err := srv.Exec(fmt.Sprintf("SET password_encryption = 'scram-sha-256'; ALTER ROLE %s PASSWORD '%s'", role, pw)); err != nil {
			t.Fatal(err)
		}
	}
	query := func(db *sql.DB) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := db.ExecContext(ctx, "select 1")
		return err
	}
	t.Run("raw pgx", func(t *testing.T) {
		setPassword("tok-v1")
		tok := &rotatingToken{cur: "tok-v1"}
		cc, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		db := stdlib.OpenDB(*cc, stdlib.OptionBeforeConnect(tok.before))
		defer db.Close()
		db.SetMaxIdleConns(0)
		if err := query(db); err != nil {
			t.Fatal(err)
		}
		setPassword("tok-v2")
		tok.rotate("tok-v2", 1)
		t.Logf("raw pgx, first query after the rotation: %v", query(db))
		if err := query(db); err != nil {
			t.Errorf("raw pgx, second query: %v", err)
		}
	})
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			setPassword("tok-v1")
			var (
				opt    Option
				rotate func()
				stale  func() int
			)
			if b.backend == PGX {
				tok := &rotatingToken{cur: "tok-v1"}
				opt = WithOpenDBOptions(stdlib.OptionBeforeConnect(tok.before))
				rotate = func() { tok.rotate("tok-v2", 1) }
				stale = func() int { tok.mu.Lock(); defer tok.mu.Unlock(); return tok.staleGiven }
			} else {
				tok := &pqToken{rotatingToken{cur: "tok-v1"}}
				opt = WithPQBeforeConnect(tok.before)
				rotate = func() { tok.rotate("tok-v2", 1) }
				stale = func() int { tok.mu.Lock(); defer tok.mu.Unlock(); return tok.staleGiven }
			}
			c, err := NewConnector(dsn, WithBackend(b.backend), opt)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			db := sql.OpenDB(c)
			defer db.Close()
			db.SetMaxIdleConns(0)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			if err := query(db); err != nil {
				t.Fatal(err)
			}
			for dc := c.takeWarm(); dc != nil; dc = c.takeWarm() {
				_ = dc.Close()
			}
			before := c.Stats()
			setPassword("tok-v2")
			rotate()
			if err := query(db); err != nil {
				t.Errorf("first query after the rotation: %v", err)
			}
			if err := query(db); err != nil {
				t.Errorf("second query: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			if st := c.Stats(); st.State != StateReady || st.StateChanges != before.StateChanges {
				t.Errorf("after the rotation: %s, %d state changes (was %d): %v", st.State, st.StateChanges, before.StateChanges, st.LastError)
			}
			if n := stale(); n != 1 {
				t.Errorf("%d logins with the old credential, want 1", n)
			}
		})
	}
}

// TestFreshCredentialFirstAttempt: the connector's own first attempt logs
// in with a credential the hook's cache still holds from before a rotation;
// on both database/sql backends the next attempt runs at once with the
// hook's fresh one and the connector is Ready within a second, not after
// the 15 s a wrong password waits.
func TestFreshCredentialFirstAttempt(t *testing.T) {
	srv := server(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			var opt Option
			if b.backend == PGX {
				tok := &rotatingToken{cur: "stale-token"}
				tok.rotate(pgtest.ScramPassword, 1)
				opt = WithOpenDBOptions(stdlib.OptionBeforeConnect(tok.before))
			} else {
				tok := &pqToken{rotatingToken{cur: "stale-token"}}
				tok.rotate(pgtest.ScramPassword, 1)
				opt = WithPQBeforeConnect(tok.before)
			}
			t0 := time.Now()
			c, err := NewConnector(scramDSNWithoutPassword(srv), WithBackend(b.backend), opt)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if !testkit.WaitFor(5*time.Second, func() bool { return c.State() == StateReady }) || time.Since(t0) > 2*time.Second {
				t.Fatalf("%s after %s: %v, want Ready within a second of the failed login", c.State(), time.Since(t0), c.Stats().LastError)
			}
			if st := c.Stats(); st.DialFailures != 1 {
				t.Errorf("%d failed logins, want 1", st.DialFailures)
			}
		})
	}
}

// TestHookPasswordNotInErrors: a password the hook supplies, refused by the
// server, shows in no message of the error chain Ready, Connect or a query
// return, on both backends (pgx's *pgconn.ConnectError keeps it in its
// Config field, as with raw pgx: see TestConnectErrorTextHasNoPassword).
func TestHookPasswordNotInErrors(t *testing.T) {
	srv := server(t)
	const secret = "h00kS3cret-token"
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			opt := WithOpenDBOptions(stdlib.OptionBeforeConnect(func(_ context.Context, cc *pgx.ConnConfig) error {
				cc.Password = secret
				return nil
			}))
			if b.backend == LibPQ {
				opt = WithPQBeforeConnect(func(_ context.Context, cfg *pq.Config) error {
					cfg.Password = secret
					return nil
				})
			}
			c, err := NewConnector(scramDSNWithoutPassword(srv), WithBackend(b.backend), opt)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			errs := map[string]error{"Ready": c.Ready(ctx)}
			_, errs["Connect"] = c.Connect(ctx)
			db := sql.OpenDB(c)
			defer db.Close()
			_, errs["query"] = db.ExecContext(ctx, "select 1")
			for what, err := range errs {
				if err == nil {
					t.Errorf("%s: no error with a wrong password", what)
					continue
				}
				for _, e := range chainErrors(err) {
					if strings.Contains(e.Error(), secret) {
						t.Errorf("%s: %T's message holds the hook's password: %q", what, e, e.Error())
					}
				}
			}
		})
	}
}
