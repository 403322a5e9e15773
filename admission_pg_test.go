package pgfast

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestQueueTimeNotConnectTimeout: time a startup waits for an admission
// slot is not connect_timeout's. With every slot of the server's address
// held for 3 s by other startups, an attempt with connect_timeout=2 still
// succeeds once admitted (with pgx's or lib/pq's own ConnectTimeout the
// wait counted and it failed).
func TestQueueTimeNotConnectTimeout(t *testing.T) {
	s := server(t)
	addr := net.JoinHostPort(s.Host(), fmt.Sprint(s.Port()))
	dsn := withKV(s.DSN(pgtest.TrustUser), "connect_timeout=2")
	hold := func(t *testing.T) {
		release := netx.HoldAdmission(addr)
		timer := time.AfterFunc(3*time.Second, release)
		t.Cleanup(func() {
			if timer.Stop() {
				release()
			}
		})
	}
	forEachBackend(t, func(t *testing.T, b backendCase) {
		hold(t)
		c, err := NewConnector(dsn, WithBackend(b.backend))
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(c)
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		if err := c.Ready(ctx); err != nil {
			t.Fatalf("Ready after queueing 3s with connect_timeout=2: %v", err)
		}
		if waited := time.Since(start); waited < 2500*time.Millisecond {
			t.Fatalf("Ready after %v: the slots were not held", waited)
		}
		if err := db.PingContext(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		if st := c.Stats(); st.DialFailures != 0 {
			t.Fatalf("%d of %d attempts failed (last: %v), want none: queue time counted against connect_timeout",
				st.DialFailures, st.Dials, st.LastError)
		}
	})
	t.Run("NewPool", func(t *testing.T) {
		hold(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		pool, err := NewPool(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		if err := pool.Ping(ctx); err != nil {
			t.Fatalf("Ping after queueing 3s with connect_timeout=2: %v", err)
		}
	})
}

// TestNoStaleDeadlineAfterHandOut: the deadline the dialer arms for
// connect_timeout is cleared before a connection is handed out, so a
// connection used after connect_timeout has passed does not fail with it.
func TestNoStaleDeadlineAfterHandOut(t *testing.T) {
	s := server(t)
	dsn := withKV(s.DSN(pgtest.TrustUser), "connect_timeout=1")
	forEachBackend(t, func(t *testing.T, b backendCase) {
		c, err := NewConnector(dsn, WithBackend(b.backend))
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(c)
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// Two connections: the background attempt's warm one and a
		// caller's dial.
		c1, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c1.Close()
		c2, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		time.Sleep(1500 * time.Millisecond) // past connect_timeout
		for i, conn := range []*sql.Conn{c1, c2} {
			var n int
			if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&n); err != nil {
				t.Errorf("connection %d, used after connect_timeout: %v", i+1, err)
			}
		}
	})
	t.Run("NewPool", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		pool, err := NewPool(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		c1, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c1.Release()
		c2, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Release()
		time.Sleep(1500 * time.Millisecond)
		for i, conn := range []*pgxpool.Conn{c1, c2} {
			var n int
			if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
				t.Errorf("pool connection %d, used after connect_timeout: %v", i+1, err)
			}
		}
	})
}

// TestStartupsWithinAdmissionLimit: 300 tenants starting at once on one
// server never have more startups in flight than the address's admission
// limit. A proxy counts startups server-side: from the accepted connection
// to the server's first ReadyForQuery. Raw pgx's count is logged beside it.
func TestStartupsWithinAdmissionLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("300 logins")
	}
	srv := newServer(t, pgtest.Options{Settings: map[string]string{"max_connections": "400"}})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	const tenants = 300
	run := func(t *testing.T, open func(dsn string) (*sql.DB, error)) (peak int, seen netx.AdmissionPeaks, failures int) {
		p := newStartupProxy(t, net.JoinHostPort(srv.Host(), fmt.Sprint(srv.Port())))
		dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=10",
			p.port(), pgtest.TrustUser, pgtest.Database)
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			dbs    []*sql.DB
			failed atomic.Int32
		)
		stop := netx.TraceAdmission(p.addr())
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		for range tenants {
			wg.Go(func() {
				db, err := open(dsn)
				if err != nil {
					failed.Add(1)
					return
				}
				mu.Lock()
				dbs = append(dbs, db)
				mu.Unlock()
				if err := db.PingContext(ctx); err != nil {
					if failed.Add(1) == 1 {
						t.Logf("first failed Ping: %v", err)
					}
				}
			})
		}
		wg.Wait()
		seen = stop()
		for _, db := range dbs {
			db.Close()
		}
		return p.peak(), seen, int(failed.Load())
	}
	rawPeak, _, rawFailed := run(t, func(dsn string) (*sql.DB, error) { return sql.Open("pgx", dsn) })
	peak, seen, failed := run(t, func(dsn string) (*sql.DB, error) {
		c, err := NewConnector(dsn)
		if err != nil {
			return nil, err
		}
		return sql.OpenDB(c), nil
	})
	t.Logf("startups in flight at most: pgfast %d (slots held at most %d, admission limit at most %d), raw pgx %d; tenants failed: pgfast %d, raw pgx %d (connect_timeout=10)",
		peak, seen.Held, seen.Limit, rawPeak, failed, rawFailed)
	if failed > 0 {
		t.Errorf("%d of %d pgfast tenants failed", failed, tenants)
	}
	if seen.Silent > 0 {
		t.Errorf("%d startups admitted over the limit: a local server answering every SYN was judged silent", seen.Silent)
	}
	if peak > seen.Limit {
		t.Errorf("pgfast had %d startups in flight to the address, more than its admission limit %d", peak, seen.Limit)
	}
}

// startupProxy forwards TCP connections to a server and counts startups in
// flight: a connection from its accept until the server's first
// ReadyForQuery (or its end).
type startupProxy struct {
	ln       net.Listener
	target   string
	inFlight atomic.Int32
	max      atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newStartupProxy(t *testing.T, target string) *startupProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &startupProxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(p.close)
	return p
}

func (p *startupProxy) port() int    { return p.ln.Addr().(*net.TCPAddr).Port }
func (p *startupProxy) addr() string { return p.ln.Addr().String() }
func (p *startupProxy) peak() int    { return int(p.max.Load()) }

func (p *startupProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *startupProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		n := p.inFlight.Add(1)
		for m := p.max.Load(); n > m && !p.max.CompareAndSwap(m, n); m = p.max.Load() {
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.inFlight.Add(-1)
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		var once sync.Once
		done := func() { once.Do(func() { p.inFlight.Add(-1) }) }
		p.wg.Go(func() {
			_, _ = io.Copy(s, c)
			s.Close()
		})
		p.wg.Go(func() {
			defer done()
			defer c.Close()
			// Messages until the first ReadyForQuery ('Z'), then a copy.
			var hdr [5]byte
			for {
				if _, err := io.ReadFull(s, hdr[:]); err != nil {
					return
				}
				if hdr[0] == 'Z' {
					// Counted out before the client can see it: its
					// login then ends, its admission slot goes to the
					// next startup, and that one's accept must not
					// find this one still counted (38 > 37, once).
					done()
				}
				if _, err := c.Write(hdr[:]); err != nil {
					return
				}
				n := int64(binary.BigEndian.Uint32(hdr[1:])) - 4
				if _, err := io.CopyN(c, s, n); err != nil {
					return
				}
				if hdr[0] == 'Z' {
					break
				}
			}
			done()
			_, _ = io.Copy(c, s)
		})
	}
}
