package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// stallProxy forwards loopback TCP connections to a PostgreSQL server and
// holds the server's bytes on demand: for connections accepted while
// stalling (a busy server: the handshake completes, its backends are slow
// to answer), or on every connection while frozen (SIGSTOP: the kernel
// still completes handshakes and ACKs, the server says nothing). Held bytes
// are delivered once released, as a stopped server's would be. It counts
// the connections it accepted (logins, with sslmode=disable).
type stallProxy struct {
	ln       net.Listener
	target   string
	stalling atomic.Bool
	frozen   atomic.Bool
	accepted atomic.Int64
	done     chan struct{}
	mu       sync.Mutex
	conns    []net.Conn
	wg       sync.WaitGroup
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, done: make(chan struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// dsn is srv's DSN through the proxy.
func (p *stallProxy) dsn(t *testing.T, srv *pgtest.Server, kv ...string) string {
	t.Helper()
	dsn := strings.Replace(srv.DSN(pgtest.TrustUser), fmt.Sprintf("port=%d", srv.Port()), fmt.Sprintf("port=%d", p.port()), 1)
	if !strings.Contains(dsn, fmt.Sprintf("port=%d", p.port())) {
		t.Fatalf("DSN %q has no port to replace", dsn)
	}
	return withKV(dsn, append([]string{"host=127.0.0.1", "sslmode=disable"}, kv...)...)
}

func (p *stallProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *stallProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		p.track(c)
		stalled := p.stalling.Load()
		p.wg.Go(func() {
			s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				c.Close()
				return
			}
			p.track(s)
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(s, c); done <- struct{}{} }()
			go func() { p.toClient(c, s, stalled); done <- struct{}{} }()
			<-done
			c.Close()
			s.Close()
			<-done
		})
	}
}

// toClient copies the server's bytes to the client, each read held while
// the proxy is frozen or, for a connection accepted while stalling, while
// it still stalls.
func (p *stallProxy) toClient(c, s net.Conn, stalled bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			for p.frozen.Load() || stalled && p.stalling.Load() {
				select {
				case <-p.done:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) close() {
	close(p.done)
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// stateLog records a connector's state changes (the state hook).
type stateLog struct {
	mu     sync.Mutex
	states []State
}

func (l *stateLog) hook(st State, _ error) {
	l.mu.Lock()
	l.states = append(l.states, st)
	l.mu.Unlock()
}

func (l *stateLog) seen() []State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]State(nil), l.states...)
}

func (l *stateLog) count(st State) int {
	n := 0
	for _, s := range l.seen() {
		if s == st {
			n++
		}
	}
	return n
}

// TestSlowStartupNotDown: a busy server whose new logins complete their TCP
// handshake and then stall past connect_timeout, while the connections
// already open keep answering, is slow, not dead: the tenant's state stays
// Connecting, never Down, and it is Ready once logins go through again. It
// went Down before (any failed attempt meant Down; a pool's timed-out
// connect too), for pgfast, pgfast-pq and NewPool.
func TestSlowStartupNotDown(t *testing.T) {
	srv := server(t)
	type frontEnd struct {
		name  string
		start func(t *testing.T, dsn string, log *stateLog) (ready func(context.Context) error, state func() State)
	}
	dbFront := func(b Backend) func(t *testing.T, dsn string, log *stateLog) (func(context.Context) error, func() State) {
		return func(t *testing.T, dsn string, log *stateLog) (func(context.Context) error, func() State) {
			c, err := NewConnector(dsn, WithBackend(b), WithStateHook(log.hook))
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(c)
			t.Cleanup(func() { _ = db.Close() })
			return c.Ready, c.State
		}
	}
	fronts := []frontEnd{
		{"pgfast", dbFront(PGX)},
		{"pgfast-pq", dbFront(LibPQ)},
		{"NewPool", func(t *testing.T, dsn string, log *stateLog) (func(context.Context) error, func() State) {
			p := newPoolT(t, dsn, WithStateHook(log.hook))
			return PoolConnector(p).Ready, PoolConnector(p).State
		}},
	}
	for _, fe := range fronts {
		t.Run(fe.name, func(t *testing.T) {
			proxy := newStallProxy(t, fmt.Sprintf("127.0.0.1:%d", srv.Port()))
			// A neighbour tenant with a connection open through the same
			// address, querying: the server answers it all along.
			neighbour, err := sql.Open("pgfast", proxy.dsn(t, srv))
			if err != nil {
				t.Fatal(err)
			}
			defer neighbour.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := neighbour.PingContext(ctx); err != nil {
				t.Fatal(err)
			}
			neighbour.SetMaxIdleConns(1)
			neighbour.SetMaxOpenConns(1)
			stop := make(chan struct{})
			var load sync.WaitGroup
			load.Go(func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
					_, _ = neighbour.ExecContext(qctx, "SELECT 1")
					qcancel()
				}
			})
			defer func() { close(stop); load.Wait() }()

			proxy.stalling.Store(true)
			log := &stateLog{}
			ready, state := fe.start(t, proxy.dsn(t, srv, "connect_timeout=1"), log)
			// Several attempts stall past connect_timeout.
			deadline := time.Now().Add(3500 * time.Millisecond)
			for time.Now().Before(deadline) {
				if st := state(); st == StateDown || st == StateReady {
					t.Fatalf("state %v while every login stalls (accepted %d)", st, proxy.accepted.Load())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if proxy.accepted.Load() < 2 {
				t.Fatalf("the proxy accepted %d connections: the attempts did not stall past connect_timeout", proxy.accepted.Load())
			}
			proxy.stalling.Store(false)
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			defer rcancel()
			if err := ready(rctx); err != nil {
				t.Fatalf("Ready once logins go through: %v", err)
			}
			if n := log.count(StateDown); n != 0 {
				t.Errorf("went Down %d times on a slow server (states %v)", n, log.seen())
			}
		})
	}
}

// TestFrozenServerDownWithoutFlap: a server that completes handshakes and
// says nothing (SIGSTOP), with nothing heard from its address, still makes
// a lone tenant Down; when it continues, the tenant is Ready once and stays
// so (late failures of what was stuck in the freeze change nothing).
func TestFrozenServerDownWithoutFlap(t *testing.T) {
	srv := server(t)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		proxy := newStallProxy(t, fmt.Sprintf("127.0.0.1:%d", srv.Port()))
		log := &stateLog{}
		c, err := NewConnector(proxy.dsn(t, srv, "connect_timeout=1"), WithBackend(b.backend), WithStateHook(log.hook))
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(c)
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Ready(ctx); err != nil {
			t.Fatal(err)
		}
		proxy.frozen.Store(true)
		stop := make(chan struct{})
		var workers sync.WaitGroup
		for range 3 {
			workers.Go(func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					qctx, qcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
					_, _ = db.ExecContext(qctx, "SELECT 1")
					qcancel()
				}
			})
		}
		defer func() { close(stop); workers.Wait() }()
		deadline := time.Now().Add(12 * time.Second)
		for c.State() != StateDown && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if st := c.State(); st != StateDown {
			t.Fatalf("state %v 12 s into a freeze, want down", st)
		}
		time.Sleep(time.Second)
		proxy.frozen.Store(false)
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		if err := c.Ready(rctx); err != nil {
			t.Fatalf("Ready after the freeze: %v", err)
		}
		time.Sleep(3 * time.Second) // what was stuck in the freeze lands
		if got := log.seen(); len(got) != 3 || got[0] != StateReady || got[1] != StateDown || got[2] != StateReady {
			t.Errorf("state changes %v, want [ready down ready]", got)
		}
	})
}

// TestPoolFirstConnIsAttempt: NewPool, Ready, Ping cost one login, as
// pgxpool.New and Ping do: the connector's attempt is the pool's first
// connection (it was closed, and the pool logged in again: 2).
func TestPoolFirstConnIsAttempt(t *testing.T) {
	srv := server(t)
	logins := map[string]int64{}
	for _, name := range []string{"pgxpool", "NewPool"} {
		proxy := newStallProxy(t, fmt.Sprintf("127.0.0.1:%d", srv.Port()))
		dsn := proxy.dsn(t, srv)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var p *pgxpool.Pool
		var err error
		if name == "NewPool" {
			p, err = NewPool(ctx, dsn)
			if err == nil {
				err = PoolConnector(p).Ready(ctx)
			}
		} else {
			p, err = pgxpool.New(ctx, dsn)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // anything else the pool would start
		logins[name] = proxy.accepted.Load()
		p.Close()
		cancel()
	}
	if logins["NewPool"] != logins["pgxpool"] {
		t.Errorf("NewPool + Ready + Ping: %d logins; pgxpool.New + Ping: %d", logins["NewPool"], logins["pgxpool"])
	}
}
