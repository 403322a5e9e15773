package netfault

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dialTimeout bounds every dial that is expected to hit a blackhole.
const dialTimeout = 300 * time.Millisecond

// TestNetfault re-executes this test binary in a network namespace to run
// TestNetfaultInside, then checks that the namespace is gone.
func TestNetfault(t *testing.T) {
	var name string
	testHookNamespace = func(n string) { name = n }
	defer func() { testHookNamespace = nil }()

	RunInNamespace(t, "^TestNetfaultInside$", map[string][]string{"db.test": {"127.0.0.2"}}, 40*time.Second)

	if name == "" {
		t.Fatal("RunInNamespace did not report a namespace name")
	}
	names, err := listNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, name) {
		t.Errorf("namespace %s still listed by ip netns list: %v", name, names)
	}
	if _, err := os.Stat(filepath.Join(netnsRunDir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s/%s still exists (err=%v)", netnsRunDir, name, err)
	}
	if _, err := os.Stat(filepath.Join(etcNetnsDir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s/%s still exists (err=%v)", etcNetnsDir, name, err)
	}
}

// TestNetfaultInside is the part of TestNetfault that runs in the namespace.
func TestNetfaultInside(t *testing.T) {
	if !Inside() {
		t.Skip("runs inside the network namespace set up by TestNetfault")
	}
	if err := checkInside(); err != nil {
		t.Fatal(err)
	}
	if ok, why := Available(); !ok || !strings.Contains(why, Name()) {
		t.Errorf("Available() = %v, %q inside namespace %s", ok, why, Name())
	}
	t.Cleanup(func() {
		if err := Clear(); err != nil {
			t.Error(err)
		}
	})
	// The hosts test waits for Go's hosts cache; the rule tests share the
	// nft table and run one after another, in parallel with it.
	t.Run("group", func(t *testing.T) {
		t.Run("Hosts", func(t *testing.T) {
			t.Parallel()
			testHosts(t)
		})
		t.Run("Rules", func(t *testing.T) {
			t.Parallel()
			t.Run("BlackholeIPv6", testBlackholeIPv6)
			t.Run("Reject", testReject)
			t.Run("PortSpecific", testPortSpecific)
			t.Run("Directions", testDirections)
			t.Run("EstablishedStall", testEstablishedStall)
			t.Run("EstablishedReset", testEstablishedReset)
			t.Run("CountSYN", testCountSYN)
			t.Run("Clear", testClear)
		})
	})
}

func testBlackholeIPv6(t *testing.T) {
	v6 := listen(t, "[::1]:0")
	v4 := listen(t, "127.0.0.1:0")
	remove := drop(t, Rule{Addr: "::1"})

	expectTimeout(t, v6)
	expectConnect(t, v4)

	if err := remove(); err != nil {
		t.Fatal(err)
	}
	expectConnect(t, v6)
	if err := remove(); err != nil {
		t.Errorf("second remove: %v", err)
	}
}

func testReject(t *testing.T) {
	for _, dir := range []string{"both", "to"} {
		t.Run(dir, func(t *testing.T) {
			addr := listen(t, "127.0.0.1:0")
			remove := drop(t, Rule{Addr: "127.0.0.1", Port: port(t, addr), Direction: dir, Reject: true})

			start := time.Now()
			conn, err := net.DialTimeout("tcp", addr, dialTimeout)
			elapsed := time.Since(start)
			if err == nil {
				conn.Close()
				t.Fatalf("dial %s succeeded despite a reject rule", addr)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("dial %s: %v, want connection refused", addr, err)
			}
			if elapsed > 200*time.Millisecond {
				t.Errorf("refused dial took %v, want it fast", elapsed)
			}
			t.Logf("rejected dial failed after %v: %v", elapsed, err)

			if err := remove(); err != nil {
				t.Fatal(err)
			}
			expectConnect(t, addr)
		})
	}
	// Rejecting the server's answers resets the server; the client, which
	// never sees a SYN-ACK, times out.
	t.Run("from", func(t *testing.T) {
		addr := listen(t, "127.0.0.1:0")
		drop(t, Rule{Addr: "127.0.0.1", Port: port(t, addr), Direction: "from", Reject: true})
		expectTimeout(t, addr)
	})
}

func testEstablishedReset(t *testing.T) {
	addr := listen(t, "[::1]:0")
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	drop(t, Rule{Addr: "::1", Port: port(t, addr), Reject: true})

	conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatalf("write: %v", err)
	}
	_, err = conn.Read(make([]byte, 4))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after a reject rule: %v, want connection reset", err)
	}
}

func testPortSpecific(t *testing.T) {
	blocked := listen(t, "127.0.0.1:0")
	open := listen(t, "127.0.0.1:0")
	drop(t, Rule{Family: "ip", Addr: "127.0.0.1", Port: port(t, blocked)})

	expectTimeout(t, blocked)
	expectConnect(t, open)
}

func testDirections(t *testing.T) {
	for _, dir := range []string{"to", "from"} {
		t.Run(dir, func(t *testing.T) {
			addr := listen(t, "127.0.0.2:0")
			remove := drop(t, Rule{Addr: "127.0.0.2", Port: port(t, addr), Direction: dir})
			expectTimeout(t, addr)
			if err := remove(); err != nil {
				t.Fatal(err)
			}
			expectConnect(t, addr)
		})
	}
}

func testEstablishedStall(t *testing.T) {
	addr := listen(t, "127.0.0.2:0")
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo := func(msg string, wait time.Duration) error {
		conn.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			t.Fatalf("echo returned %q, want %q", buf, msg)
		}
		return nil
	}
	write := func(msg string) {
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatalf("write: %v", err)
		}
	}

	write("before")
	if err := echo("before", time.Second); err != nil {
		t.Fatalf("echo before the rule: %v", err)
	}

	remove := drop(t, Rule{Addr: "127.0.0.2", Port: port(t, addr)})
	write("during") // lands in the send buffer; the segments are dropped
	if err := echo("during", 500*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read during the rule: %v, want a deadline timeout", err)
	}

	if err := remove(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := echo("during", 5*time.Second); err != nil {
		t.Fatalf("read after removing the rule: %v", err)
	}
	t.Logf("connection recovered %v after the rule was removed (TCP retransmission)", time.Since(start).Round(time.Millisecond))
}

func testClear(t *testing.T) {
	a := listen(t, "127.0.0.1:0")
	b := listen(t, "[::1]:0")
	removeA := drop(t, Rule{Addr: "127.0.0.1", Port: port(t, a)})
	drop(t, Rule{Family: "ip6", Port: port(t, b), Reject: true})

	if err := Clear(); err != nil {
		t.Fatal(err)
	}
	expectConnect(t, a)
	expectConnect(t, b)
	if err := removeA(); err != nil {
		t.Errorf("remove after Clear: %v", err)
	}
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v: %s", err, out)
	}
	if strings.Contains(string(out), nftTable) {
		t.Errorf("table %s survived Clear: %s", nftTable, out)
	}
	if err := Clear(); err != nil {
		t.Errorf("Clear without a table: %v", err)
	}
}

func testHosts(t *testing.T) {
	// RunInNamespace wrote the initial file; this is the process's first
	// lookup, so Go's hosts cache is fresh.
	want := []string{"127.0.0.2"}
	if got := lookup(t, "db.test"); !slices.Equal(got, want) {
		t.Fatalf("LookupHost(db.test) = %v, want %v", got, want)
	}
	before, err := os.Stat("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}

	if err := SetHosts(map[string][]string{"db.test": {"::1", "127.0.0.3"}}); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("SetHosts replaced /etc/hosts instead of rewriting it in place")
	}
	data, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, line := range []string{"::1\tlocalhost\n", "127.0.0.1\tlocalhost\n", "::1\tdb.test\n", "127.0.0.3\tdb.test\n"} {
		if !strings.Contains(text, line) {
			t.Errorf("/etc/hosts lacks %q:\n%s", line, text)
		}
	}
	if strings.Contains(text, "127.0.0.2") {
		t.Errorf("/etc/hosts still has the old address:\n%s", text)
	}

	// glibc reads the file on every lookup.
	if getent, err := exec.LookPath("getent"); err == nil {
		out, err := exec.Command(getent, "ahosts", "db.test").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "127.0.0.3") || strings.Contains(string(out), "127.0.0.2") {
			t.Errorf("getent ahosts db.test = %v, %q", err, out)
		}
	}

	// Go's resolver caches /etc/hosts for up to 5 s.
	want = []string{"::1", "127.0.0.3"}
	start := time.Now()
	for {
		got := lookup(t, "db.test")
		if slices.Equal(got, want) {
			t.Logf("Go's resolver saw the new hosts file after %v", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 7*time.Second {
			t.Fatalf("LookupHost(db.test) = %v after %v, want %v", got, time.Since(start), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAvailable checks that Available always explains its verdict.
func TestAvailable(t *testing.T) {
	ok, why := Available()
	t.Logf("Available() = %v, %q", ok, why)
	if why == "" {
		t.Error("Available gave no reason")
	}
	if !ok && os.Getenv(EnvRequire) == "1" {
		t.Errorf("%s=1 but fault tests cannot run: %s", EnvRequire, why)
	}
}

func TestRuleTranslation(t *testing.T) {
	tests := []struct {
		rule Rule
		want []nftRule
	}{
		{Rule{Addr: "::1", Port: 5432}, []nftRule{
			{"output", "ip6 daddr ::1 tcp dport 5432 drop"},
			{"input", "ip6 saddr ::1 tcp sport 5432 drop"},
		}},
		{Rule{Addr: "127.0.0.2", Direction: "to", Reject: true}, []nftRule{
			{"output", "ip daddr 127.0.0.2 meta l4proto tcp tcp flags & rst == 0 reject with tcp reset"},
		}},
		{Rule{Addr: "::ffff:127.0.0.1", Port: 1, Direction: "from"}, []nftRule{
			{"input", "ip saddr 127.0.0.1 tcp sport 1 drop"},
		}},
		{Rule{Family: "ip", Port: 80, Direction: "to"}, []nftRule{
			{"output", "ip daddr 127.0.0.0/8 tcp dport 80 drop"},
		}},
		{Rule{Port: 80, Direction: "both"}, []nftRule{
			{"output", "ip daddr 127.0.0.0/8 tcp dport 80 drop"},
			{"input", "ip saddr 127.0.0.0/8 tcp sport 80 drop"},
			{"output", "ip6 daddr ::1 tcp dport 80 drop"},
			{"input", "ip6 saddr ::1 tcp sport 80 drop"},
		}},
		{Rule{Addr: "127.0.0.1", Port: 5432, Percent: 20}, []nftRule{
			{"output", "ip daddr 127.0.0.1 tcp dport 5432 numgen random mod 100 < 20 drop"},
			{"input", "ip saddr 127.0.0.1 tcp sport 5432 numgen random mod 100 < 20 drop"},
		}},
		{Rule{Addr: "::1", Port: 5432, Direction: "to", Percent: 5, Reject: true}, []nftRule{
			{"output", "ip6 daddr ::1 tcp dport 5432 numgen random mod 100 < 5 tcp flags & rst == 0 reject with tcp reset"},
		}},
	}
	for _, tt := range tests {
		got, err := tt.rule.nftRules()
		if err != nil {
			t.Errorf("%+v: %v", tt.rule, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%+v:\n got %v\nwant %v", tt.rule, got, tt.want)
		}
	}
	for _, p := range []int{-1, 100} {
		if _, err := (Rule{Port: 80, Percent: p}).nftRules(); err == nil {
			t.Errorf("Percent %d accepted, want an error (1–99, or 0 for every packet)", p)
		}
	}
}

// TestRejectsNonLoopback checks that rules and hosts entries naming any
// address outside 127.0.0.0/8 and ::1 are refused, inside or outside a
// namespace.
func TestRejectsNonLoopback(t *testing.T) {
	for _, r := range []Rule{
		{Addr: "10.0.0.1"},
		{Addr: "192.168.1.1", Port: 5432},
		{Addr: "8.8.8.8", Reject: true},
		{Addr: "::2"},
		{Addr: "fe80::1%lo"},
		{Addr: "::ffff:10.0.0.1"},
		{Addr: "localhost"},
		{Family: "ip", Addr: "::1"},
		{Family: "ip6", Addr: "127.0.0.1"},
		{Family: "inet"},
		{Direction: "sideways"},
		{Port: 70000},
	} {
		if remove, err := Drop(r); err == nil {
			remove()
			t.Errorf("Drop(%+v) succeeded", r)
		}
	}
	for _, hosts := range []map[string][]string{
		{"db": {"192.0.2.1"}},
		{"db": {"127.0.0.1", "10.1.1.1"}},
		{"localhost": {"::2"}},
		{"db": {"db.example.com"}},
		{"db": {}},
		{"bad name": {"127.0.0.1"}},
		{"evil\n8.8.8.8 db": {"127.0.0.1"}},
	} {
		if err := SetHosts(hosts); err == nil {
			t.Errorf("SetHosts(%q) succeeded", hosts)
		}
	}
}

func TestFormatHosts(t *testing.T) {
	got, err := formatHosts(map[string][]string{"b.test": {"127.0.0.3"}, "a.test": {"::1", "127.0.0.2"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "::1\tlocalhost\n127.0.0.1\tlocalhost\n::1\ta.test\n127.0.0.2\ta.test\n127.0.0.3\tb.test\n"
	if body := got[strings.Index(got, "\n")+1:]; body != want {
		t.Errorf("formatHosts:\n%s\nwant:\n%s", body, want)
	}

	got, err = formatHosts(map[string][]string{"localhost": {"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(got, "::1") {
		t.Errorf("caller's localhost entry was not honoured:\n%s", got)
	}
}

// TestOutsideRefuses checks that nothing is changed outside a namespace.
func TestOutsideRefuses(t *testing.T) {
	if Inside() {
		t.Skip("inside a namespace")
	}
	if _, err := Drop(Rule{Addr: "127.0.0.1", Port: 1}); !errors.Is(err, errNotInside) {
		t.Errorf("Drop outside: %v", err)
	}
	if err := Clear(); !errors.Is(err, errNotInside) {
		t.Errorf("Clear outside: %v", err)
	}
	if err := SetHosts(nil); !errors.Is(err, errNotInside) {
		t.Errorf("SetHosts outside: %v", err)
	}
	// A forged environment variable is not enough either.
	t.Setenv(EnvInside, "pgfast-0123456789ab")
	if _, err := Drop(Rule{Addr: "127.0.0.1", Port: 1}); err == nil {
		t.Error("Drop with a forged " + EnvInside + " succeeded")
	}
}

// TestDestroyKillsLeftovers checks that tearing a namespace down kills
// processes still running in it.
func TestDestroyKillsLeftovers(t *testing.T) {
	if Inside() {
		t.Skip("inside a namespace")
	}
	requireAvailable(t)
	name, err := newName()
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := formatHosts(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { destroyNamespace(name) })
	if err := createNamespace(name, hosts); err != nil {
		t.Fatal(err)
	}
	ip, err := lookTool("ip")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sleeper := exec.CommandContext(ctx, ip, "netns", "exec", name, "sleep", "30")
	sleeper.SysProcAttr = groupLeader() // not reached by a group kill
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	for deadline := time.Now().Add(2 * time.Second); ; {
		out, _ := runCmd(ip, "netns", "pids", name)
		if strings.TrimSpace(out) != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sleep did not show up in the namespace")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := destroyNamespace(name); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Logf("leftover process ended: %v", err)
	case <-time.After(2 * time.Second):
		t.Error("leftover process still running after destroyNamespace")
	}
	names, err := listNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, name) {
		t.Errorf("namespace %s survived destroyNamespace", name)
	}
	if _, err := os.Stat(filepath.Join(etcNetnsDir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s/%s survived destroyNamespace (err=%v)", etcNetnsDir, name, err)
	}
}

func requireAvailable(t *testing.T) {
	t.Helper()
	if ok, why := Available(); !ok {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
}

// listen starts a TCP echo server on addr and returns its address.
func listen(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				io.Copy(conn, conn)
			}()
		}
	}()
	return ln.Addr().String()
}

// drop installs r for the rest of the test and returns its remove function.
func drop(t *testing.T, r Rule) func() error {
	t.Helper()
	remove, err := Drop(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := remove(); err != nil {
			t.Error(err)
		}
	})
	return remove
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func expectConnect(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v, want a connection", addr, err)
	}
	conn.Close()
}

func expectTimeout(t *testing.T, addr string) {
	t.Helper()
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err == nil {
		conn.Close()
		t.Fatalf("dial %s connected, want a timeout", addr)
	}
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("dial %s: %v after %v, want a timeout", addr, err, time.Since(start))
	}
}

func lookup(t *testing.T, host string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		t.Fatalf("LookupHost(%s): %v", host, err)
	}
	return addrs
}
