package netfault

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// testCountSYN: a dial into a blackhole, cut at 1.5 s, sends two SYNs (the
// kernel retransmits at 1 s), both counted although the drop rule came
// first; while it waits its socket is in SYN-SENT. After the rule is gone
// a connect counts one more.
func testCountSYN(t *testing.T) {
	addr := listen(t, "127.0.0.1:0")
	p := port(t, addr)
	server := netip.MustParseAddrPort(addr)
	drop(t, Rule{Addr: "127.0.0.1", Port: p})
	read, remove, err := CountSYN("127.0.0.1", p)
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c, err := net.DialTimeout("tcp", addr, 1500*time.Millisecond); err == nil {
			c.Close()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if n, err := SynSent(server); err != nil || n != 1 {
		t.Errorf("SYN-SENT sockets to %s: %d, %v; want 1", server, n, err)
	}
	<-done
	if n, err := SynSent(server); err != nil || n != 0 {
		t.Errorf("SYN-SENT after the dial gave up: %d, %v; want 0", n, err)
	}
	if n, err := read(); err != nil || n != 2 {
		t.Errorf("SYNs counted: %d, %v; want 2 (the SYN and its retransmission at 1 s)", n, err)
	}
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1538":                         "127.0.0.1:5432",
		"00000000000000000000000001000000:0016": "[::1]:22",
		"0000000000000000FFFF00000100007F:1538": "127.0.0.1:5432",
	} {
		got, err := parseProcAddr(in)
		if err != nil || got != netip.MustParseAddrPort(want) {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}

func TestCounterPackets(t *testing.T) {
	out := `{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"chain": {"family": "inet", "table": "pgfast_fault", "name": "output", "handle": 2}},
 {"rule": {"family": "inet", "table": "pgfast_fault", "chain": "output", "handle": 7, "expr": [{"match": {}}, {"counter": {"packets": 42, "bytes": 2520}}]}},
 {"rule": {"family": "inet", "table": "pgfast_fault", "chain": "output", "handle": 5, "expr": [{"drop": null}]}}]}`
	if n, err := counterPackets(out, 7); err != nil || n != 42 {
		t.Errorf("counterPackets = %d, %v; want 42", n, err)
	}
	if _, err := counterPackets(out, 5); err == nil {
		t.Error("a rule without a counter gave no error")
	}
}
