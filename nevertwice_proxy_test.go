package pgfast

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ntProxy is the never-twice matrix's loopback proxy: it forwards every
// accepted connection (TCP on 127.0.0.1, or a unix socket path) to the
// current target, and cuts the connections it carries on demand, with a
// reset or with an EOF after the server's answer had begun (mid-result). A
// target switch (setTarget) serves a restarted pooler behind the same address.
type ntProxy struct {
	ln net.Listener

	mu     sync.Mutex
	target func() (net.Conn, error)
	pipes  map[*ntPipe]struct{}
	closed bool

	wg sync.WaitGroup // the accept loop and every pipe's two copiers
}

// ntPipe is one proxied connection.
type ntPipe struct {
	client, server net.Conn
	// fromServer counts the bytes forwarded to the client since the
	// client's last write: above zero, the server's answer has begun.
	fromServer atomic.Int64
	once       sync.Once
}

func (p *ntPipe) close() {
	p.once.Do(func() {
		p.client.Close()
		p.server.Close()
	})
}

// newNTProxy listens on network/addr ("tcp" "127.0.0.1:0", or "unix" and a
// socket path) and forwards to what target dials.
func newNTProxy(network, addr string, target func() (net.Conn, error)) (*ntProxy, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	p := &ntProxy{ln: ln, target: target, pipes: map[*ntPipe]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

// port is the proxy's TCP port (TCP listeners only).
func (p *ntProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// setTarget makes new connections go to target (those open stay where they are).
func (p *ntProxy) setTarget(target func() (net.Conn, error)) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

func (p *ntProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target, closed := p.target, p.closed
		p.mu.Unlock()
		if closed {
			c.Close()
			return
		}
		up, err := target()
		if err != nil {
			c.Close()
			continue
		}
		pipe := &ntPipe{client: c, server: up}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			pipe.close()
			return
		}
		p.pipes[pipe] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.forward(pipe, true) })
		p.wg.Go(func() { p.forward(pipe, false) })
	}
}

// forward copies one direction of pipe until either side ends, then closes
// both (a server that went away ends the client's connection too: EOF).
func (p *ntProxy) forward(pipe *ntPipe, toServer bool) {
	src, dst := pipe.server, pipe.client
	if toServer {
		src, dst = pipe.client, pipe.server
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if toServer {
				pipe.fromServer.Store(0)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
			if !toServer {
				pipe.fromServer.Add(int64(n))
			}
		}
		if err != nil {
			break
		}
	}
	pipe.close()
	p.mu.Lock()
	delete(p.pipes, pipe)
	p.mu.Unlock()
}

// cutRST resets every connection the proxy carries (TCP: SO_LINGER 0, so
// the client reads ECONNRESET).
func (p *ntProxy) cutRST() {
	for _, pipe := range p.snapshot() {
		if tc, ok := pipe.client.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		pipe.close()
	}
}

// cutEOF closes every connection the proxy carries in order (the client
// reads EOF), once the server's answer to a client's last write has begun to
// reach it (the statement's connection; a pool's idle one has nothing in
// flight), or after wait. It reports whether the answer had begun.
func (p *ntProxy) cutEOF(wait time.Duration) bool {
	pipes := p.snapshot()
	begun := func() bool {
		for _, pipe := range pipes {
			if pipe.fromServer.Load() > 0 {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(wait)
	for !begun() && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	mid := begun()
	for _, pipe := range pipes {
		pipe.close()
	}
	return mid
}

func (p *ntProxy) snapshot() []*ntPipe {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*ntPipe, 0, len(p.pipes))
	for pipe := range p.pipes {
		out = append(out, pipe)
	}
	return out
}

// close stops listening, closes every connection and waits for the copiers.
func (p *ntProxy) close() {
	p.mu.Lock()
	p.closed = true
	pipes := make([]*ntPipe, 0, len(p.pipes))
	for pipe := range p.pipes {
		pipes = append(pipes, pipe)
	}
	p.mu.Unlock()
	p.ln.Close()
	for _, pipe := range pipes {
		pipe.close()
	}
	p.wg.Wait()
}
