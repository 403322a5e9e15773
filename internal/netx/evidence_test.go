package netx

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestHeardClock: a login's socket whose handshake completed is "heard since"
// only once some socket of the process to the same address read a byte
// after that handshake; a byte before it, or to another address, does not
// count, and neither does a handshake alone.
func TestHeardClock(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	accepted := make(chan net.Conn, 8)
	for _, l := range []net.Listener{ln, other} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
	}
	d := NewDialer(Settings{ConnectTimeout: 5 * time.Second}, nil)
	d.SetBook(NewBook(nil))
	ctx := context.Background()
	dial := func(l net.Listener) (net.Conn, net.Conn) {
		t.Helper()
		c, err := d.DialContext(ctx, "tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-accepted:
			t.Cleanup(func() { s.Close(); c.Close() })
			return c, s
		case <-time.After(5 * time.Second):
			t.Fatal("not accepted")
		}
		return nil, nil
	}
	readByte := func(c, s net.Conn) {
		t.Helper()
		if _, err := s.Write([]byte{'N'}); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil {
			t.Fatal(err)
		}
	}

	busy, busySrv := dial(ln)
	readByte(busy, busySrv) // before the login's handshake: does not count
	login, _ := dial(ln)
	if Answered(login) || AddrHeardSince(login) {
		t.Fatal("a handshake alone counts as heard")
	}
	o, oSrv := dial(other)
	readByte(o, oSrv) // another address
	if AddrHeardSince(login) {
		t.Fatal("a byte from another address counts")
	}
	readByte(busy, busySrv) // a sibling heard after the login's handshake
	if !AddrHeardSince(login) {
		t.Fatal("a byte on a sibling socket after the handshake is not heard")
	}
	if Answered(login) {
		t.Fatal("the login's own socket read nothing")
	}
	if !Answered(busy) {
		t.Fatal("a socket that read is not Answered")
	}
	if AddrHeardSince(&net.TCPConn{}) || Answered(nil) {
		t.Fatal("a foreign socket is heard")
	}
}
