package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// withPlatform makes a connector act as if it ran on p (tests only).
func withPlatform(p platform) Option { return func(o *options) { o.testPlatform = &p } }

// TestPlatformConfigSaysWhatIsApplied: Config reads as what the system
// applies, and notApplied names the DSN keys it drops.
func TestPlatformConfigSaysWhatIsApplied(t *testing.T) {
	asked := Config{Keepalives: true, KeepalivesIdle: 10 * time.Second, KeepalivesInterval: 5 * time.Second,
		KeepalivesCount: 3, TCPUserTimeout: 1500 * time.Millisecond}
	for _, tc := range []struct {
		goos       string
		userTO     time.Duration
		keepIdle   time.Duration
		notApplied []string
	}{
		{"linux", 1500 * time.Millisecond, 10 * time.Second, nil},
		{"darwin", 2 * time.Second, 10 * time.Second, nil},
		{"windows", 1500 * time.Millisecond, 10 * time.Second, nil},
		{"freebsd", 0, 10 * time.Second, []string{"tcp_user_timeout"}},
		{"openbsd", 0, 0, []string{"keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"}},
	} {
		p := platformOf(tc.goos)
		c := asked
		if got := p.notApplied(&c); !slices.Equal(got, tc.notApplied) {
			t.Errorf("%s: notApplied %v, want %v", tc.goos, got, tc.notApplied)
		}
		p.apply(&c)
		if c.TCPUserTimeout != tc.userTO || c.KeepalivesIdle != tc.keepIdle {
			t.Errorf("%s: Config says tcp_user_timeout %v, keepalives_idle %v; want %v, %v", tc.goos, c.TCPUserTimeout, c.KeepalivesIdle, tc.userTO, tc.keepIdle)
		}
		if got := p.notApplied(&c); got != nil {
			t.Errorf("%s: after apply, notApplied %v", tc.goos, got)
		}
	}
}

// TestPlatformThisBuild: the files built for this system provide what
// platformOf promises for it (the cross-compiled vet runs this check's
// compilation for every system; the test runs it here).
func TestPlatformThisBuild(t *testing.T) {
	p := platformOf(runtime.GOOS)
	if netx.CanPeek != p.Peek || thisPlatform.Peek != p.Peek {
		t.Errorf("%s: platformOf says peek %v, the build has canPeek %v", runtime.GOOS, p.Peek, netx.CanPeek)
	}
	if netx.WatchesPeers != p.DeadPeerWatch {
		t.Errorf("%s: platformOf says dead-peer watch %v, the build has %v", runtime.GOOS, p.DeadPeerWatch, netx.WatchesPeers)
	}
	c, err := NewConnector("host=127.0.0.1 tcp_user_timeout=1500", withNoBackground())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := Config{TCPUserTimeout: 1500 * time.Millisecond}
	p.apply(&want)
	if got := c.Config().TCPUserTimeout; got != want.TCPUserTimeout {
		t.Errorf("Config().TCPUserTimeout = %v, want %v on %s", got, want.TCPUserTimeout, runtime.GOOS)
	}
}

// withNoProbe makes a connector without its background goroutine.
func withNoBackground() Option { return func(o *options) { o.noBackground = true } }

// TestNoPeekKeepsPgxPing: on a system without the checkout peek (Windows),
// pgfast keeps pgx's own ping before it reuses a connection idle for over a
// second, so a pooled connection whose backend was terminated is dropped and
// the query retried on a new one, exactly as with raw pgx (database/sql and
// pgxpool). Before, pgfast switched pgx's ping off everywhere and the query
// failed with 57P01 where raw pgx succeeded.
func TestNoPeekKeepsPgxPing(t *testing.T) {
	srv := server(t)
	dsn := srv.DSN(pgtest.TrustUser)
	noPeek := platformOf("windows")
	noPeek.GOOS = "linux-without-peek"

	staleQuery := func(t *testing.T, pidOf func() (int, error)) (victim, after int, err error) {
		t.Helper()
		if victim, err = pidOf(); err != nil {
			t.Fatalf("first query: %v", err)
		}
		if err := srv.Exec(fmt.Sprintf("SELECT pg_terminate_backend(%d, 5000);", victim)); err != nil {
			t.Fatalf("pg_terminate_backend: %v", err)
		}
		time.Sleep(1200 * time.Millisecond) // idle for over a second: pgx pings
		after, err = pidOf()
		return victim, after, err
	}
	check := func(t *testing.T, who string, victim, after int, err error) {
		t.Helper()
		switch {
		case err != nil:
			t.Errorf("%s: query on a pool whose connection's backend was terminated: %v", who, err)
		case after == victim:
			t.Errorf("%s: ran on the terminated backend %d", who, victim)
		}
	}

	t.Run("database/sql", func(t *testing.T) {
		open := map[string]func() (*sql.DB, error){
			"raw pgx": func() (*sql.DB, error) { return sql.Open("pgx", dsn) },
			"pgfast without peek": func() (*sql.DB, error) {
				c, err := NewConnector(dsn, withPlatform(noPeek))
				if err != nil {
					return nil, err
				}
				return sql.OpenDB(c), nil
			},
		}
		for _, who := range []string{"raw pgx", "pgfast without peek"} {
			db, err := open[who]()
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxIdleConns(1)
			db.SetMaxOpenConns(1)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			victim, after, err := staleQuery(t, func() (pid int, err error) {
				return pid, db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid)
			})
			cancel()
			db.Close()
			check(t, who, victim, after, err)
		}
	})

	t.Run("pgxpool", func(t *testing.T) {
		pdsn := withKV(dsn, "pool_max_conns=1")
		for _, who := range []string{"raw pgxpool", "pgfast without peek"} {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			var (
				pool *pgxpool.Pool
				err  error
			)
			if who == "raw pgxpool" {
				pool, err = pgxpool.New(ctx, pdsn)
			} else {
				pool, err = NewPool(ctx, pdsn, withPlatform(noPeek))
			}
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			victim, after, err := staleQuery(t, func() (pid int, err error) {
				return pid, pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid)
			})
			pool.Close()
			cancel()
			check(t, who, victim, after, err)
		}
	})
}

// TestNoPeekChecksNoSocket: without the peek, the checkout neither peeks nor
// fails a socket (the raw driver's ping is the check), with the peek it
// finds the closed socket.
func TestNoPeekChecksNoSocket(t *testing.T) {
	for _, noPeek := range []bool{false, true} {
		b := netx.NewBook(nil)
		b.SetNoPeek(noPeek)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srvSide, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		addr := netip.MustParseAddrPort(ln.Addr().String())
		tc := b.Track(addr, nc)
		srvSide.Close()
		var ok bool
		for range 100 { // the FIN arrives
			if ok, _ = netx.SocketState(tc); !ok {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		nc.Close()
		if want := noPeek || !netx.CanPeek; ok != want {
			t.Errorf("noPeek=%v: socketState alive %v after the peer closed, want %v", noPeek, ok, want)
		}
	}
}

// TestPlatformInspectSeesWhatTheDSNAsked: explain's list of keys this
// system does not apply comes from the DSN's own values, and reading them
// leaves the parse as it was.
func TestPlatformInspectSeesWhatTheDSNAsked(t *testing.T) {
	_, p, err := parsePGX("host=127.0.0.1 tcp_user_timeout=1500 keepalives_idle=20")
	if err != nil {
		t.Fatal(err)
	}
	asked := askedSettings(p)
	if asked == nil || asked.TCPUserTimeout != 1500*time.Millisecond || asked.KeepalivesIdle != 20*time.Second {
		t.Fatalf("askedSettings = %+v", asked)
	}
	if got := platformOf("openbsd").diag(asked).NotApplied; !slices.Equal(got, []string{"keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"}) {
		t.Errorf("openbsd: NotApplied %v", got)
	}
	cfg, err := buildConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	want := *asked
	thisPlatform.apply(&want)
	if cfg.TCPUserTimeout != want.TCPUserTimeout || cfg.KeepalivesIdle != want.KeepalivesIdle {
		t.Errorf("buildConfig after askedSettings: %v, %v; want %v, %v", cfg.TCPUserTimeout, cfg.KeepalivesIdle, want.TCPUserTimeout, want.KeepalivesIdle)
	}
	if _, p, err := parsePGX("host=127.0.0.1 keepalives_count=x"); err == nil && askedSettings(p) != nil {
		t.Error("askedSettings of an invalid DSN is not nil")
	}
}
