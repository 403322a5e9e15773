package pgfast

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// TestQueuedAttemptDoesNotSpin: a connector whose attempt waits for
// admission (the address's slots held by startups a server never answers)
// must not re-run its loop in a tight circle. Before the fix 17 such
// connectors burnt a whole core (2.9 s of CPU in 3 s) until admitted.
func TestQueuedAttemptDoesNotSpin(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	var cs []*Connector
	for range 17 { // one more than the address's first admission limit
		c, err := NewConnector(fmt.Sprintf("host=127.0.0.1 port=%d user=u dbname=d connect_timeout=30 pgfast_dns_recheck=0", port))
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		defer c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	queued := 0
	for queued == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		queued = 0
		for _, c := range cs {
			queued += c.queued()
		}
	}
	if queued == 0 {
		t.Skip("no attempt queued for admission within 10 s (the limit grew?)")
	}
	time.Sleep(1500 * time.Millisecond) // past attemptOverlap: where it spun
	before, _ := processCPU()
	time.Sleep(2 * time.Second)
	after, _ := processCPU()
	t.Logf("%v of CPU in 2 s, %d attempts queued", after-before, queued)
	if used := after - before; used > 250*time.Millisecond { // a spinning loop takes 1-3 s of it; a waiting one ~3 ms
		t.Fatalf("%v of CPU in 2 s while %d attempts waited for admission: the loop spins", used, queued)
	}
}
