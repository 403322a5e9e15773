package testkit

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Listener listens on addr (loopback only), accepting and closing
// connections until the test ends. It returns the listener's port.
func Listener(t testing.TB, network, addr string) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	if network == "unix" {
		return ""
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// RefusedPort returns a loopback port nothing listens on.
func RefusedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return port
}

// LoopbackPair returns both ends of one TCP connection on 127.0.0.1: the
// client end c and the server end s. The caller closes them.
func LoopbackPair(t testing.TB) (c, s net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		a, _ := ln.Accept()
		accepted <- a
	}()
	c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if s = <-accepted; s == nil {
		c.Close()
		t.Fatal("accept failed")
	}
	return c, s
}
