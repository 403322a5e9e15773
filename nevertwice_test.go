package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/testkit"
)

// The property "never twice": a statement whose bytes left is never run a
// second time by pgfast, whatever the transport, the backend, the way its
// connection dies and the kind of statement. Each cell of the matrix runs
// one statement that writes a row (into a table without a key, so a second
// run is a second row, not an error) and then waits; the connection dies
// during the wait; the cell counts the statement's rows. pgfast must count at
// most one. The raw driver runs the same cell in the same run: its count is
// recorded, not judged (raw lib/pq runs a terminated statement again; pgx and
// pgxpool never do).
//
// By default a subset runs that covers every transport, backend, way of dying
// and statement kind at least once; PGFAST_NEVERTWICE=full (scripts/never-twice)
// runs the whole matrix.

// envNeverTwice selects the whole matrix ("full").
const envNeverTwice = "PGFAST_NEVERTWICE"

var (
	ntTransports = []string{"tcp", "tls", "unix", "pgbouncer"}
	ntBackends   = []string{"pgx", "pq", "pgxpool"}
	// ntDeaths: 57P01 = pg_terminate_backend; rst = the proxy resets the
	// connection; eof = the proxy closes it after the server's answer had
	// begun; idle-tx = idle_in_transaction_session_timeout ends the session
	// before the statement's bytes arrive; pooler-restart = PgBouncer stops
	// and a new one takes over; kill-9 = SIGKILL of the backend process,
	// which sends the whole server into crash recovery.
	ntDeaths = []string{"57P01", "rst", "eof", "idle-tx", "pooler-restart", "kill-9"}
	ntKinds  = []string{"exec", "query", "prepared", "tx", "copy"}
)

// ntCell is one cell of the matrix.
type ntCell struct{ transport, backend, death, kind string }

func (c ntCell) String() string {
	return c.transport + "/" + c.backend + "/" + c.death + "/" + c.kind
}

// applies reports whether the cell exists, and why not when it does not.
func (c ntCell) applies() (bool, string) {
	switch {
	case c.kind == "copy" && c.backend == "pgx":
		return false, "pgx's database/sql driver has no COPY FROM STDIN"
	case c.death == "rst" && c.transport == "unix":
		return false, "a unix socket has no reset"
	case c.death == "pooler-restart" && c.transport != "pgbouncer":
		return false, "no pooler on this transport"
	}
	return true, ""
}

// ntCells returns the cells to run: all of them, or the default subset.
func ntCells(full bool) []ntCell {
	var all []ntCell
	for _, tr := range ntTransports {
		for _, b := range ntBackends {
			for _, d := range ntDeaths {
				for _, k := range ntKinds {
					c := ntCell{tr, b, d, k}
					if ok, _ := c.applies(); ok {
						all = append(all, c)
					}
				}
			}
		}
	}
	if full {
		return ntKillLast(all)
	}
	// One cell per transport and way of dying, with the backend and the
	// kind rotating so that each appears on several transports; then the
	// issue's own report (pgfast-pq over a unix socket) and what the
	// matrix found (pgfast-pq's Commit).
	var sub []ntCell
	seen := map[ntCell]bool{}
	add := func(c ntCell) {
		if ok, _ := c.applies(); ok && !seen[c] {
			seen[c] = true
			sub = append(sub, c)
		}
	}
	for ti, tr := range ntTransports {
		for di, d := range ntDeaths {
			c := ntCell{tr, ntBackends[(ti+di)%len(ntBackends)], d, ntKinds[(2*ti+di)%len(ntKinds)]}
			if ok, _ := c.applies(); !ok && c.kind == "copy" {
				c.kind = "exec"
			}
			add(c)
		}
	}
	add(ntCell{"unix", "pq", "57P01", "exec"})
	add(ntCell{"unix", "pq", "57P01", "prepared"})
	add(ntCell{"unix", "pq", "eof", "query"})
	// lib/pq's ErrBadConn after COMMIT was sent.
	add(ntCell{"tcp", "pq", "57P01", "tx"})
	return ntKillLast(sub)
}

// ntKillLast moves the kill-9 cells to the end: each sends the server into
// crash recovery.
func ntKillLast(cells []ntCell) []ntCell {
	var rest, kills []ntCell
	for _, c := range cells {
		if c.death == "kill-9" {
			kills = append(kills, c)
		} else {
			rest = append(rest, c)
		}
	}
	return append(rest, kills...)
}

// TestNeverTwiceSubsetCovers: the default subset has every transport,
// backend, way of dying and statement kind.
func TestNeverTwiceSubsetCovers(t *testing.T) {
	sub := ntCells(false)
	for _, dim := range []struct {
		name   string
		values []string
		of     func(ntCell) string
	}{
		{"transport", ntTransports, func(c ntCell) string { return c.transport }},
		{"backend", ntBackends, func(c ntCell) string { return c.backend }},
		{"death", ntDeaths, func(c ntCell) string { return c.death }},
		{"kind", ntKinds, func(c ntCell) string { return c.kind }},
	} {
		for _, v := range dim.values {
			found := false
			for _, c := range sub {
				found = found || dim.of(c) == v
			}
			if !found {
				t.Errorf("the default subset has no cell with %s %s", dim.name, v)
			}
		}
	}
	t.Logf("%d cells by default, %d in the full matrix", len(sub), len(ntCells(true)))
}

// ntSchema is the cells' table and statements. A procedure inserts, commits,
// says so (a NOTICE: the answer has begun) and waits: a death during the wait
// comes after the row is there. COPY rows ("copy:" tags) and a transaction's
// rows ("tx:" tags, at COMMIT) wait in triggers instead: their row is not
// committed when the connection dies, and must not be by a re-run either.
const ntSchema = `
CREATE TABLE nt_rows (tag text);
CREATE FUNCTION nt_wait() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'nt: % waits', NEW.tag; PERFORM pg_sleep(30); RETURN NEW; END $$;
CREATE TRIGGER nt_copy_wait BEFORE INSERT ON nt_rows FOR EACH ROW
	WHEN (NEW.tag LIKE 'copy:%') EXECUTE FUNCTION nt_wait();
CREATE CONSTRAINT TRIGGER nt_tx_wait AFTER INSERT ON nt_rows DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW WHEN (NEW.tag LIKE 'tx:%') EXECUTE FUNCTION nt_wait();
CREATE PROCEDURE nt_ins(t text) LANGUAGE plpgsql AS $$
BEGIN INSERT INTO nt_rows VALUES (t); COMMIT; RAISE NOTICE 'nt: % committed', t; PERFORM pg_sleep(30); END $$;
CREATE PROCEDURE nt_ins_out(INOUT t text) LANGUAGE plpgsql AS $$
BEGIN INSERT INTO nt_rows VALUES (t); COMMIT; RAISE NOTICE 'nt: % committed', t; PERFORM pg_sleep(30); END $$;
`

// ntHarness is the matrix's world: a server of its own (TLS on, its unix
// socket, and crash recovery after kill-9 hurting no other test), PgBouncer
// behind a proxy (a restarted PgBouncer takes over the same address), and an
// observer connection straight to the server.
type ntHarness struct {
	t        *testing.T
	srv      *pgtest.Server
	observer *sql.DB
	bouncer  *pgtest.PgBouncer // nil without pgbouncer
	// bouncerProxy is where the pgbouncer transport connects: it forwards
	// to the current bouncer.
	bouncerProxy *ntProxy
	seq          int
}

func newNTHarness(t *testing.T) *ntHarness {
	t.Helper()
	certs, err := pgtest.NewCerts("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(certs.Cleanup)
	settings := certs.ServerSettings()
	// A commit the cell saw must survive kill-9's crash recovery.
	settings["synchronous_commit"] = "on"
	srv := newServer(t, pgtest.Options{Settings: settings})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Exec(ntSchema); err != nil {
		t.Fatal(err)
	}
	h := &ntHarness{t: t, srv: srv}
	h.observer, err = sql.Open("postgres", srv.DSN(pgtest.TrustUser)+" connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	h.observer.SetMaxOpenConns(2)
	t.Cleanup(func() { h.observer.Close() })
	h.bouncer, err = pgtest.StartPgBouncer(srv)
	switch {
	case errors.Is(err, pgtest.ErrNoPgBouncer):
		h.bouncer = nil
	case err != nil:
		t.Fatal(err)
	default:
		h.bouncerProxy, err = newNTProxy("tcp", "127.0.0.1:0", h.bouncerDial(h.bouncer.Port()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			h.bouncerProxy.close()
			if h.bouncer != nil {
				h.bouncer.Stop()
			}
		})
	}
	return h
}

func (h *ntHarness) bouncerDial(port int) func() (net.Conn, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }
}

// restartBouncer stops PgBouncer and starts a new one behind the same proxy.
func (h *ntHarness) restartBouncer() error {
	h.bouncer.Stop()
	b, err := pgtest.StartPgBouncer(h.srv)
	if err != nil {
		h.bouncer = nil
		return err
	}
	h.bouncer = b
	h.bouncerProxy.setTarget(h.bouncerDial(b.Port()))
	return nil
}

// ensureBouncer restarts PgBouncer if it stopped listening (once, in a
// full run, it did, between two cells, with nothing in this test's own
// output to say why): the matrix is about pgfast, not about PgBouncer; its
// log goes to the test's.
func (h *ntHarness) ensureBouncer(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(h.bouncer.Port())), 2*time.Second)
	if err == nil {
		c.Close()
		return
	}
	t.Logf("pgbouncer stopped listening (%v); restarting it. Its log:\n%s", err, h.bouncer.Log())
	if err := h.restartBouncer(); err != nil {
		t.Fatalf("restarting pgbouncer: %v", err)
	}
}

// ntSide is one driver's run of a cell: raw or pgfast.
type ntSide struct {
	raw   bool
	count int    // the statement's rows
	err   error  // what the statement returned
	note  string // what else happened (the EOF was not mid-result, ...)
}

func (s ntSide) String() string {
	err := "ok"
	if s.err != nil {
		err = testkit.Short(s.err)
	}
	out := fmt.Sprintf("rows=%d err=%s", s.count, err)
	if s.note != "" {
		out += " (" + s.note + ")"
	}
	return out
}

// TestNeverTwice is the property over the matrix (see the top of the file).
func TestNeverTwice(t *testing.T) {
	full := os.Getenv(envNeverTwice) == "full"
	cells := ntCells(full)
	if only := os.Getenv(envNeverTwice); only != "" && only != "full" {
		// A comma-separated list of cell names (transport/backend/death/kind).
		cells = nil
		for _, name := range strings.Split(only, ",") {
			f := strings.Split(name, "/")
			if len(f) != 4 {
				t.Fatalf("%s=%q: want full or transport/backend/death/kind,...", envNeverTwice, only)
			}
			cells = append(cells, ntCell{f[0], f[1], f[2], f[3]})
		}
	}
	h := newNTHarness(t)
	defer func() {
		if t.Failed() && h.bouncer != nil {
			t.Logf("pgbouncer log:\n%s", h.bouncer.Log())
		}
	}()
	var report []string
	rawTwice := 0
	for _, c := range cells {
		t.Run(c.String(), func(t *testing.T) {
			if c.transport == "pgbouncer" {
				if h.bouncer == nil {
					requireOrSkip(t, "pgbouncer is not installed (apt-get install pgbouncer)")
				}
				h.ensureBouncer(t)
			}
			raw := h.runSide(t, c, true)
			fast := h.runSide(t, c, false)
			line := fmt.Sprintf("%-42s raw: %-40s pgfast: %s", c, raw, fast)
			t.Log(line)
			report = append(report, line)
			if raw.count > 1 {
				rawTwice++
			}
			if fast.count > 1 {
				t.Errorf("%s: pgfast ran the statement %d times (raw: %d): %v", c, fast.count, raw.count, fast.err)
			}
			// driver.ErrBadConn tells database/sql (and the application)
			// that the server cannot have run the statement. After a death
			// during the statement's wait its bytes had left: pgfast must
			// say so (ErrConnLost) even inside a transaction, where
			// database/sql does not retry. An idle-in-transaction death
			// comes before the statement: there pgfast may say what the
			// raw driver says, never more.
			if errors.Is(fast.err, driver.ErrBadConn) && (c.death != "idle-tx" || !errors.Is(raw.err, driver.ErrBadConn)) {
				t.Errorf("%s: driver.ErrBadConn reached the caller (raw: %v): %v", c, raw.err, fast.err)
			}
		})
	}
	t.Logf("never twice, %d cells (raw driver, then pgfast); the raw driver ran the statement twice in %d:\n%s",
		len(cells), rawTwice, strings.Join(report, "\n"))
}

// runSide runs cell c with the raw driver or through pgfast, and counts.
func (h *ntHarness) runSide(t *testing.T, c ntCell, raw bool) ntSide {
	t.Helper()
	h.seq++
	side := ntSide{raw: raw}
	who := "fast"
	if raw {
		who = "raw"
	}
	prefix := c.kind
	if c.death == "idle-tx" {
		prefix = "i" + c.kind // no trigger waits: the session dies idle
	}
	tag := fmt.Sprintf("%s:%s:%d", prefix, who, h.seq)

	dsn, proxy := h.dsnFor(t, c)
	if proxy != nil {
		defer proxy.close()
	}
	d, err := openNTDriver(c.backend, raw, dsn)
	if err != nil {
		t.Fatalf("%s %s: open: %v", c, who, err)
	}
	defer d.close()

	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	go func() { done <- d.run(ctx, c.kind, tag, c.death == "idle-tx") }()

	var returned bool
	if c.death != "idle-tx" {
		pid, early := h.waitSleeping(done, 10*time.Second)
		switch {
		case early != nil:
			side.err, returned = *early, true
			side.note = "returned before its wait"
		case pid == 0:
			t.Fatalf("%s %s: the statement never reached its wait", c, who)
		default:
			side.note = h.kill(t, c, pid, proxy)
		}
	}
	if !returned {
		side.err = h.awaitReturn(t, done, 25*time.Second)
	}
	if c.death == "kill-9" {
		h.waitServer(t)
	}
	h.settle(t)
	side.count = h.count(t, tag)
	return side
}

// dsnFor returns the DSN of c's transport and, for the deaths the proxy
// makes, the proxy it goes through.
func (h *ntHarness) dsnFor(t *testing.T, c ntCell) (string, *ntProxy) {
	t.Helper()
	base := fmt.Sprintf("user=%s connect_timeout=5 application_name=nevertwice", pgtest.TrustUser)
	if c.backend == "pgxpool" {
		base += " pool_max_conns=2"
	}
	proxied := c.death == "rst" || c.death == "eof"
	tcpTo := func(port int) (net.Conn, error) {
		return net.DialTimeout("tcp", net.JoinHostPort(h.srv.Host(), strconv.Itoa(port)), 5*time.Second)
	}
	newProxy := func(network, addr string, target func() (net.Conn, error)) *ntProxy {
		p, err := newNTProxy(network, addr, target)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	switch c.transport {
	case "tcp", "tls":
		mode := "disable"
		if c.transport == "tls" {
			mode = "require"
		}
		port := h.srv.Port()
		var p *ntProxy
		if proxied {
			p = newProxy("tcp", "127.0.0.1:0", func() (net.Conn, error) { return tcpTo(h.srv.Port()) })
			port = p.port()
		}
		return fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s sslmode=%s %s", port, pgtest.Database, mode, base), p
	case "unix":
		dir := h.srv.SocketDir()
		var p *ntProxy
		if proxied {
			dir = t.TempDir()
			sock := filepath.Join(h.srv.SocketDir(), fmt.Sprintf(".s.PGSQL.%d", h.srv.Port()))
			p = newProxy("unix", filepath.Join(dir, fmt.Sprintf(".s.PGSQL.%d", h.srv.Port())), func() (net.Conn, error) {
				return net.DialTimeout("unix", sock, 5*time.Second)
			})
		}
		return fmt.Sprintf("host=%s port=%d dbname=%s sslmode=disable %s", dir, h.srv.Port(), pgtest.Database, base), p
	case "pgbouncer":
		// Always through the bouncer's proxy; rst and eof cut it.
		return fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s sslmode=disable %s",
			h.bouncerProxy.port(), pgtest.BouncerSessionDB, base), nil
	}
	t.Fatalf("unknown transport %s", c.transport)
	return "", nil
}

// waitSleeping waits until a backend of the cell waits in pg_sleep and
// returns its pid, or the statement's error if it returned first.
func (h *ntHarness) waitSleeping(done <-chan error, limit time.Duration) (int, *error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return 0, &err
		default:
		}
		var pid int
		err := h.observer.QueryRow(`SELECT pid FROM pg_stat_activity
			WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid() ORDER BY backend_start DESC LIMIT 1`).Scan(&pid)
		if err == nil {
			return pid, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, nil
}

// kill makes c's connection die while its backend pid waits.
func (h *ntHarness) kill(t *testing.T, c ntCell, pid int, proxy *ntProxy) (note string) {
	t.Helper()
	if c.transport == "pgbouncer" && (c.death == "rst" || c.death == "eof") {
		proxy = h.bouncerProxy
	}
	switch c.death {
	case "57P01":
		if _, err := h.observer.Exec("SELECT pg_terminate_backend($1)", pid); err != nil {
			t.Fatalf("pg_terminate_backend: %v", err)
		}
	case "rst":
		proxy.cutRST()
	case "eof":
		if !proxy.cutEOF(2 * time.Second) {
			return "the EOF came before any of the answer"
		}
	case "pooler-restart":
		if err := h.restartBouncer(); err != nil {
			t.Fatalf("restarting pgbouncer: %v", err)
		}
	case "kill-9":
		// os.Process.Kill is SIGKILL; it also builds on every GOOS.
		p, err := os.FindProcess(pid)
		if err == nil {
			err = p.Kill()
		}
		if err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
	default:
		t.Fatalf("unknown death %s", c.death)
	}
	return ""
}

// awaitReturn waits for the statement to return. Meanwhile any backend that
// waits in pg_sleep is a re-run (the original one is gone, or behind a cut
// proxy): it is cancelled, so that the call returns, with the re-run's row
// already committed where the re-run is a CALL.
func (h *ntHarness) awaitReturn(t *testing.T, done <-chan error, limit time.Duration) error {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the statement did not return within %s after its connection died", limit)
		}
		_, _ = h.observer.Exec(`SELECT pg_cancel_backend(pid) FROM pg_stat_activity
			WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid()`)
	}
}

// settle ends every backend still waiting (one behind a cut proxy sleeps on)
// and waits until no client backend but the observer's is active, so that
// the count is final.
func (h *ntHarness) settle(t *testing.T) {
	t.Helper()
	ok := testkit.WaitFor(15*time.Second, func() bool {
		var n int
		err := h.observer.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE backend_type = 'client backend' AND state <> 'idle' AND pid <> pg_backend_pid()`).Scan(&n)
		return err == nil && n == 0
	})
	if !ok {
		t.Fatal("backends of the cell still active after 15 s")
	}
}

// waitServer waits for the server to serve again after crash recovery, and
// gives PgBouncer fresh server connections (it waits server_login_retry
// after a failed login).
func (h *ntHarness) waitServer(t *testing.T) {
	t.Helper()
	if !testkit.WaitFor(60*time.Second, func() bool { return h.observer.Ping() == nil }) {
		t.Fatalf("the server did not come back after kill -9:\n%s", h.srv.Log())
	}
	if h.bouncer != nil {
		if err := h.restartBouncer(); err != nil {
			t.Fatalf("restarting pgbouncer: %v", err)
		}
	}
}

func (h *ntHarness) count(t *testing.T, tag string) int {
	t.Helper()
	var n int
	if err := h.observer.QueryRow("SELECT count(*) FROM nt_rows WHERE tag = $1", tag).Scan(&n); err != nil {
		t.Fatalf("count: %v", err)
	}
	return n
}

// ntDriver runs a cell's statement with one driver.
type ntDriver interface {
	run(ctx context.Context, kind, tag string, idleTx bool) error
	close()
}

// openNTDriver opens backend raw or through pgfast on dsn, with one
// connection made (the statement then runs on a warm connection, as the
// issue's reports did).
func openNTDriver(backend string, raw bool, dsn string) (ntDriver, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if backend == "pgxpool" {
		var pool *pgxpool.Pool
		var err error
		if raw {
			pool, err = pgxpool.New(ctx, dsn)
		} else {
			pool, err = NewPool(ctx, dsn)
		}
		if err != nil {
			return nil, err
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, err
		}
		return ntPool{pool}, nil
	}
	name := map[string][2]string{"pgx": {"pgx", "pgfast"}, "pq": {"postgres", "pgfast-pq"}}[backend]
	driverName := name[1]
	if raw {
		driverName = name[0]
	}
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2)
	if !raw {
		if err := Ready(ctx, db); err != nil {
			db.Close()
			return nil, err
		}
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return ntSQL{db}, nil
}

// ntSQL runs statements through database/sql, which retries a statement on
// another connection when the driver says driver.ErrBadConn.
type ntSQL struct{ db *sql.DB }

func (d ntSQL) close() { d.db.Close() }

func (d ntSQL) run(ctx context.Context, kind, tag string, idleTx bool) error {
	if idleTx {
		return d.runIdleTx(ctx, kind, tag)
	}
	switch kind {
	case "exec":
		_, err := d.db.ExecContext(ctx, "CALL nt_ins($1)", tag)
		return err
	case "query":
		return drainSQL(d.db.QueryContext(ctx, "CALL nt_ins_out($1)", tag))
	case "prepared":
		st, err := d.db.PrepareContext(ctx, "CALL nt_ins($1)")
		if err != nil {
			return err
		}
		defer st.Close()
		_, err = st.ExecContext(ctx, tag)
		return err
	case "tx":
		tx, err := d.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO nt_rows VALUES ($1)", tag); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	case "copy":
		tx, err := d.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := copySQL(ctx, tx, tag); err != nil {
			return err
		}
		return tx.Commit()
	}
	return fmt.Errorf("unknown kind %s", kind)
}

// runIdleTx opens a transaction that idle_in_transaction_session_timeout
// ends, and then sends the statement in it.
func (d ntSQL) runIdleTx(ctx context.Context, kind, tag string) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SET LOCAL idle_in_transaction_session_timeout = '100ms'"); err != nil {
		return err
	}
	if kind == "tx" {
		if _, err := tx.ExecContext(ctx, "INSERT INTO nt_rows VALUES ($1)", tag); err != nil {
			return err
		}
	}
	time.Sleep(500 * time.Millisecond) // the server ends the session
	switch kind {
	case "exec":
		_, err = tx.ExecContext(ctx, "INSERT INTO nt_rows VALUES ($1)", tag)
	case "query":
		err = drainSQL(tx.QueryContext(ctx, "INSERT INTO nt_rows VALUES ($1) RETURNING tag", tag))
	case "prepared":
		var st *sql.Stmt
		if st, err = tx.PrepareContext(ctx, "INSERT INTO nt_rows VALUES ($1)"); err == nil {
			_, err = st.ExecContext(ctx, tag)
			st.Close()
		}
	case "tx":
		return tx.Commit()
	case "copy":
		err = copySQL(ctx, tx, tag)
	}
	if err != nil {
		return err
	}
	return tx.Commit()
}

// copySQL copies one row with lib/pq's COPY FROM STDIN statement.
func copySQL(ctx context.Context, tx *sql.Tx, tag string) error {
	st, err := tx.PrepareContext(ctx, "COPY nt_rows (tag) FROM STDIN")
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.ExecContext(ctx, tag); err != nil {
		return err
	}
	_, err = st.ExecContext(ctx)
	return err
}

func drainSQL(rows *sql.Rows, err error) error {
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
	}
	return rows.Err()
}

// ntPool runs statements on a pgxpool.Pool (pgxpool never re-runs one).
type ntPool struct{ pool *pgxpool.Pool }

func (d ntPool) close() { d.pool.Close() }

func (d ntPool) run(ctx context.Context, kind, tag string, idleTx bool) error {
	if idleTx {
		return d.runIdleTx(ctx, kind, tag)
	}
	switch kind {
	case "exec":
		_, err := d.pool.Exec(ctx, "CALL nt_ins($1)", tag)
		return err
	case "query":
		return drainPgx(d.pool.Query(ctx, "CALL nt_ins_out($1)", tag))
	case "prepared":
		conn, err := d.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer conn.Release()
		if _, err := conn.Conn().Prepare(ctx, "nt_prepared", "CALL nt_ins($1)"); err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "nt_prepared", tag)
		return err
	case "tx":
		tx, err := d.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "INSERT INTO nt_rows VALUES ($1)", tag); err != nil {
			return err
		}
		return tx.Commit(ctx)
	case "copy":
		_, err := d.pool.CopyFrom(ctx, pgx.Identifier{"nt_rows"}, []string{"tag"}, pgx.CopyFromRows([][]any{{tag}}))
		return err
	}
	return fmt.Errorf("unknown kind %s", kind)
}

func (d ntPool) runIdleTx(ctx context.Context, kind, tag string) error {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL idle_in_transaction_session_timeout = '100ms'"); err != nil {
		return err
	}
	if kind == "tx" {
		if _, err := tx.Exec(ctx, "INSERT INTO nt_rows VALUES ($1)", tag); err != nil {
			return err
		}
	}
	time.Sleep(500 * time.Millisecond) // the server ends the session
	switch kind {
	case "exec":
		_, err = tx.Exec(ctx, "INSERT INTO nt_rows VALUES ($1)", tag)
	case "query":
		err = drainPgx(tx.Query(ctx, "INSERT INTO nt_rows VALUES ($1) RETURNING tag", tag))
	case "prepared":
		if _, err = tx.Prepare(ctx, "nt_idle_prepared", "INSERT INTO nt_rows VALUES ($1)"); err == nil {
			_, err = tx.Exec(ctx, "nt_idle_prepared", tag)
		}
	case "tx":
		return tx.Commit(ctx)
	case "copy":
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"nt_rows"}, []string{"tag"}, pgx.CopyFromRows([][]any{{tag}}))
	}
	if err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func drainPgx(rows pgx.Rows, err error) error {
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
	}
	return rows.Err()
}
