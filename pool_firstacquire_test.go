package pgfast

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// holdFirstProxy forwards TCP connections to target, except that it holds
// the first one it accepts (nothing forwarded) until release is called.
type holdFirstProxy struct {
	ln      net.Listener
	target  string
	release chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
	clients []string // remote addresses of accepted connections, in order
}

func newHoldFirstProxy(t *testing.T, target string) *holdFirstProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdFirstProxy{ln: ln, target: target, release: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *holdFirstProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *holdFirstProxy) unhold() { p.once.Do(func() { close(p.release) }) }

func (p *holdFirstProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *holdFirstProxy) accept() {
	defer p.wg.Done()
	first := true
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(c)
		p.mu.Lock()
		p.clients = append(p.clients, c.RemoteAddr().String())
		p.mu.Unlock()
		held := first
		first = false
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if held {
				<-p.release
			}
			s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				c.Close()
				return
			}
			p.track(s)
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(s, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, s); done <- struct{}{} }()
			<-done
			c.Close()
			s.Close()
			<-done
		}()
	}
}

// waitAccepted waits (bounded) until the proxy has accepted n connections.
func (p *holdFirstProxy) waitAccepted(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		got := len(p.clients)
		p.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy accepted %d connections in 10 s, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// accepted is the position (1-based) of the connection from client, 0 if none.
func (p *holdFirstProxy) accepted(client string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, a := range p.clients {
		if a == client {
			return i + 1
		}
	}
	return 0
}

func (p *holdFirstProxy) close() {
	p.unhold()
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestPoolFirstAcquireTakesTheAttempt: a new pool's first Acquire, made
// while the connector's first attempt is in flight, does not dial a second
// login beside it (cause A8: that login's timeout on a busy server made the
// pool Down): it waits, bounded by its context, and gets the attempt's
// connection, the pool's first (cause A9). Here the attempt is held by a
// proxy: while held, the proxy accepts no other connection; once released,
// the Acquire's connection is the proxy's first. Before, the Acquire dialled
// at once (the proxy's second connection) and the attempt's login was
// closed.
func TestPoolFirstAcquireTakesTheAttempt(t *testing.T) {
	srv := server(t)
	proxy := newHoldFirstProxy(t, fmt.Sprintf("127.0.0.1:%d", srv.Port()))
	dsn := strings.Replace(srv.DSN(pgtest.TrustUser), fmt.Sprintf("port=%d", srv.Port()), fmt.Sprintf("port=%d", proxy.port()), 1)
	if !strings.Contains(dsn, fmt.Sprintf("port=%d", proxy.port())) {
		t.Fatalf("DSN %q has no port to replace", dsn)
	}
	p := newPoolT(t, withKV(dsn, "host=127.0.0.1", "connect_timeout=20"))
	proxy.waitAccepted(t, 1) // the connector's first attempt, held
	if got := PoolConnector(p).State(); got != StateConnecting {
		t.Fatalf("state right after NewPool = %v, want connecting (the first attempt is held)", got)
	}
	// An Acquire whose context ends while the attempt is held returns its
	// context's error and dials nothing.
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if _, err := p.Acquire(short); err == nil {
		t.Fatal("Acquire got a connection while the only login is held")
	}
	cancelShort()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	type acquired struct {
		conn *pgxpool.Conn
		err  error
	}
	got := make(chan acquired, 1)
	go func() {
		conn, err := p.Acquire(ctx)
		got <- acquired{conn, err}
	}()
	time.Sleep(300 * time.Millisecond)
	proxy.mu.Lock()
	n := len(proxy.clients)
	proxy.mu.Unlock()
	if n != 1 {
		t.Fatalf("the proxy accepted %d connections while the first attempt was held, want 1: the pool dialled beside it", n)
	}
	proxy.unhold()
	a := <-got
	if a.err != nil {
		t.Fatalf("first Acquire once the attempt went through: %v", a.err)
	}
	defer a.conn.Release()
	var one int
	if err := a.conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	if n := proxy.accepted(a.conn.Conn().PgConn().Conn().LocalAddr().String()); n != 1 {
		t.Errorf("the first Acquire's connection was the proxy's connection #%d, want #1 (the attempt's)", n)
	}
	poolReadyT(t, p, 5*time.Second)
}
