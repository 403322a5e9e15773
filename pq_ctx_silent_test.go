package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// ---------------------------------------------------------------------------
// A network gone silent: a TCP proxy that stops forwarding.

// silentProxy forwards TCP between clients and target until it is silenced;
// then it drops every byte in both directions, and connections made while it
// is silent (lib/pq's cancel request) are accepted and never answered: a
// blackhole without root.
type silentProxy struct {
	ln     net.Listener
	target string
	silent atomic.Bool

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newSilentProxy(t *testing.T, target string) *silentProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// dsn is a lib/pq DSN for the trust user through the proxy.
func (p *silentProxy) dsn() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=3",
		p.ln.Addr().(*net.TCPAddr).Port, pgtest.TrustUser, pgtest.Database)
}

func (p *silentProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *silentProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *silentProxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer client.Close()
	if p.silent.Load() {
		_, _ = io.Copy(io.Discard, client)
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil || !p.track(server) {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.pipe(client, server)
	}()
	p.pipe(server, client)
}

// pipe copies src to dst, dropping what it reads while the proxy is silent,
// until either side fails; then it closes both.
func (p *silentProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.silent.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops the proxy and closes every connection it holds.
func (p *silentProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := p.conns
	p.mu.Unlock()
	p.ln.Close()
	for c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

func TestPQContextOnSilentNetwork(t *testing.T) {
	srv := server(t)
	leakCheck(t)
	target := net.JoinHostPort(srv.Host(), strconv.Itoa(srv.Port()))

	// Raw lib/pq through a proxy of its own, for comparison.
	rawProxy := newSilentProxy(t, target)
	raw, err := sql.Open(pqCase().raw, rawProxy.dsn())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetMaxOpenConns(1)
	if err := raw.Ping(); err != nil {
		t.Fatal(err)
	}

	proxy := newSilentProxy(t, target)
	db := openT(t, pqCase(), proxy.dsn())
	readyT(t, db, 10*time.Second)
	db.SetMaxOpenConns(1)
	stmt, err := db.Prepare("SELECT pg_sleep($1)::text")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()

	// heal lifts the silence and checks that the pool works again, on a new
	// connection.
	heal := func(oldPID int) {
		t.Helper()
		proxy.silent.Store(false)
		readyT(t, db, 10*time.Second)
		if pid := backendPID(t, db); pid == oldPID {
			t.Error("the interrupted connection was reused")
		}
	}

	t.Run("query", func(t *testing.T) {
		pid := backendPID(t, db)
		proxy.silent.Store(true)
		rawProxy.silent.Store(true)

		rawDone := make(chan error, 1)
		rawStart := time.Now()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var s string
			rawDone <- raw.QueryRowContext(ctx, "SELECT pg_sleep(30)::text").Scan(&s)
		}()

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		var s string
		err := db.QueryRowContext(ctx, "SELECT pg_sleep(30)::text").Scan(&s)
		elapsedWithin(t, "pgfast-pq, 2s context, silent network", time.Since(start), 2500*time.Millisecond)
		t.Logf("pgfast-pq error: %v", err)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}

		select {
		case err := <-rawDone:
			t.Logf("raw lib/pq, 2s context, silent network: returned after %v: %v", time.Since(rawStart).Round(time.Millisecond), err)
		case <-time.After(6*time.Second - time.Since(rawStart)):
			t.Logf("raw lib/pq, 2s context, silent network: still blocked after %v", time.Since(rawStart).Round(time.Millisecond))
			rawProxy.Close() // unblocks it
			select {
			case err := <-rawDone:
				t.Logf("raw lib/pq returned once its proxy closed: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatal("raw lib/pq did not return after its proxy closed")
			}
		}
		heal(pid)
	})

	t.Run("statement", func(t *testing.T) {
		var s string
		if err := stmt.QueryRow(0).Scan(&s); err != nil { // prepared on the current connection
			t.Fatal(err)
		}
		pid := backendPID(t, db)
		proxy.silent.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		err := stmt.QueryRowContext(ctx, 30).Scan(&s)
		elapsedWithin(t, "prepared statement, 1s context, silent network", time.Since(start), 1500*time.Millisecond)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}
		heal(pid)
	})

	t.Run("transaction", func(t *testing.T) {
		pid := backendPID(t, db)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		proxy.silent.Store(true)
		start := time.Now()
		// The call's own context never ends: the transaction's does.
		_, err = tx.ExecContext(context.Background(), "SELECT pg_sleep(30)")
		elapsedWithin(t, "transaction with a 1s context, silent network", time.Since(start), 1500*time.Millisecond)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}
		_ = tx.Rollback()
		heal(pid)
	})
}
