package testkit

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestParseHostsFiltersFamilyAndComments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	data := "# comment db\n127.0.0.2 db other\n::1 db # v6\n127.0.0.3 notdb\n127.0.0.4 DB\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	for network, want := range map[string][]string{
		"ip":  {"127.0.0.2", "::1", "127.0.0.4"},
		"ip4": {"127.0.0.2", "127.0.0.4"},
		"ip6": {"::1"},
	} {
		got, err := ParseHosts(path, network, "db")
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		if !slices.Equal(s, want) {
			t.Errorf("ParseHosts(%s) = %v, want %v", network, s, want)
		}
	}
}

func TestProcAddrDecodesLittleEndianWords(t *testing.T) {
	if got, want := procAddr("0100007F:1538"), netip.MustParseAddrPort("127.0.0.1:5432"); got != want {
		t.Errorf("procAddr = %v, want %v", got, want)
	}
	if got := procAddr("garbage"); got.IsValid() {
		t.Errorf("procAddr(garbage) = %v, want invalid", got)
	}
}

func TestEstablishedToCountsOwnConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !WaitFor(5*time.Second, func() bool { return EstablishedTo("127.0.0.1", port) == 1 }) {
		t.Errorf("EstablishedTo = %d, want 1\n%s", EstablishedTo("127.0.0.1", port), SocketReport())
	}
	if SocketFDs() < 2 {
		t.Errorf("SocketFDs = %d, want at least the listener and the connection", SocketFDs())
	}
}
