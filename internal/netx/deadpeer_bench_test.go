package netx

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// legacyTracked is trackedConn's hot path before the dead-peer watcher (no
// in-I/O counter), kept to pair the benchmarks.
type legacyTracked struct {
	net.Conn
	evicted atomic.Bool
	writes  atomic.Uint64
}

func (c *legacyTracked) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.evicted.Load() {
		return n, errConnEvicted
	}
	return n, err
}

func (c *legacyTracked) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.writes.Add(1)
	}
	if err != nil && c.evicted.Load() {
		return n, errConnEvicted
	}
	return n, err
}

// loopbackPair returns both ends of a loopback TCP connection.
func loopbackPair(b *testing.B) (client, server net.Conn) {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	server = <-accepted
	b.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// BenchmarkTrackedIO pairs the old and new hot path of a tracked socket: one
// Write and one Read of a 64-byte message (a small query's I/O) per op over
// loopback TCP. The difference is what the watcher costs every query.
//
//	go test -run '^$' -bench 'TrackedIO' -count 10 . | benchstat -col /path -
func BenchmarkTrackedIO(b *testing.B) {
	msg := make([]byte, 64)
	run := func(b *testing.B, w, r net.Conn) {
		buf := make([]byte, 64)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := w.Write(msg); err != nil {
				b.Fatal(err)
			}
			for n := 0; n < len(buf); {
				m, err := r.Read(buf[n:])
				if err != nil {
					b.Fatal(err)
				}
				n += m
			}
		}
	}
	b.Run("path=old", func(b *testing.B) {
		c, s := loopbackPair(b)
		run(b, &legacyTracked{Conn: c}, &legacyTracked{Conn: s})
	})
	b.Run("path=new", func(b *testing.B) {
		c, s := loopbackPair(b)
		book := NewBook(nil)
		addr := netip.MustParseAddrPort("127.0.0.1:5432")
		book.attemptStarted(addr)
		book.attemptStarted(addr)
		w := book.attemptDone(addr, c, nil)
		r := book.attemptDone(addr, s, nil)
		run(b, w, r)
	})
	b.Run("path=watched", func(b *testing.B) {
		c, s := loopbackPair(b)
		book := NewBook(nil)
		addr := netip.MustParseAddrPort("127.0.0.1:5432")
		book.attemptStarted(addr)
		book.attemptStarted(addr)
		w := book.attemptDone(addr, c, nil).(*trackedConn)
		r := book.attemptDone(addr, s, nil).(*trackedConn)
		pw := newPeerWatcher()
		for _, tc := range []*trackedConn{w, r} {
			tc.window = DefaultDeadPeerWindow
			pw.add(tc)
		}
		b.Cleanup(func() { pw.remove(w); pw.remove(r) })
		run(b, w, r)
	})
}

// BenchmarkWatcherIdleTick is one watcher tick over 2,000 registered idle
// sockets (1,000 tenants with two connections each): the whole cost of idle
// sockets, since no system call is made for them. At two ticks a second, the
// share of one core is 2 × ns/op / 1e9.
func BenchmarkWatcherIdleTick(b *testing.B) {
	w := newPeerWatcher()
	book := NewBook(nil)
	addr := netip.MustParseAddrPort("127.0.0.1:5432")
	for range 2000 {
		book.attemptStarted(addr)
		client, server := net.Pipe()
		b.Cleanup(func() { client.Close(); server.Close() })
		tc := book.attemptDone(addr, client, nil).(*trackedConn)
		w.socks[tc] = struct{}{} // registered without starting the goroutine
	}
	var busy []*trackedConn
	b.ReportAllocs()
	for b.Loop() {
		busy = w.inIO(busy[:0])
		for _, tc := range busy {
			w.check(tc, time.Now())
		}
	}
	b.ReportMetric(2*float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9*100, "%core@2ticks/s")
}

// nopConn is a socket whose Read and Write return at once: the benchmark
// below measures the wrapper alone.
type nopConn struct{ net.Conn }

func (nopConn) Read(p []byte) (int, error)  { return len(p), nil }
func (nopConn) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkTrackedIOWrapper is BenchmarkTrackedIO without the system calls:
// the wrapper's own cost per Write+Read, old and new.
func BenchmarkTrackedIOWrapper(b *testing.B) {
	buf := make([]byte, 64)
	run := func(b *testing.B, c net.Conn) {
		for b.Loop() {
			_, _ = c.Write(buf)
			_, _ = c.Read(buf)
		}
	}
	b.Run("path=old", func(b *testing.B) { run(b, &legacyTracked{Conn: nopConn{}}) })
	b.Run("path=new", func(b *testing.B) {
		book := NewBook(nil)
		addr := netip.MustParseAddrPort("127.0.0.1:5432")
		book.attemptStarted(addr)
		run(b, book.attemptDone(addr, nopConn{}, nil))
	})
	// watched: registered with a watcher, as a dialled socket is (its Read
	// and Write look at whether the watcher is parked).
	b.Run("path=watched", func(b *testing.B) {
		book := NewBook(nil)
		addr := netip.MustParseAddrPort("127.0.0.1:5432")
		book.attemptStarted(addr)
		tc := book.attemptDone(addr, nopConn{}, nil).(*trackedConn)
		w := newPeerWatcher()
		w.sample = func(*trackedConn) (tcpSample, bool) { return tcpSample{}, true }
		tc.window = DefaultDeadPeerWindow
		w.add(tc)
		b.Cleanup(func() { w.remove(tc) })
		run(b, tc)
	})
}
