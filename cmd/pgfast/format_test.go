package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/internal/diag"
	"github.com/pgfast/pgfast/internal/timeline"
)

// Unit tests of the output, on reports and explanations built by hand.

func sampleConfig() pgfast.Config {
	return pgfast.Config{
		ConnectTimeout: 10 * time.Second, Keepalives: true,
		KeepalivesIdle: 10 * time.Second, KeepalivesInterval: 5 * time.Second, KeepalivesCount: 3,
		TCPUserTimeout: 25 * time.Second, TargetSessionAttrs: "read-write", LoadBalanceHosts: "disable",
		Hosts: []pgfast.HostPort{{Host: "db.example", Port: 5432}, {Host: "db2.example", Port: 5433}},
	}
}

func sampleReport() *diag.Report {
	timedOut := diag.AddrReport{
		Network: "tcp", Addr: "[::1]:5432", Dial: diag.DialTimedOut, DialTime: 10 * time.Second,
		DialErr: errors.New("dial [::1]:5432: context deadline exceeded"),
	}
	standby := diag.AddrReport{
		Network: "tcp", Addr: "127.0.0.1:5432", Dial: diag.DialConnected, DialTime: 312 * time.Microsecond,
		TLS: "TLS 1.3 TLS_AES_128_GCM_SHA256", Authenticated: true, ServerVersion: "15.18",
		RoleKnown: true, Standby: true, ReadOnly: true, Elapsed: 4200 * time.Microsecond,
		Socket: &diag.SocketOptions{Keepalive: true, KeepalivesIdle: 10 * time.Second, KeepalivesInterval: 5 * time.Second,
			KeepalivesCount: 3, TCPUserTimeout: 25 * time.Second},
	}
	badAuth := diag.AddrReport{
		Network: "tcp", Addr: "127.0.0.2:5433", Dial: diag.DialConnected, DialTime: time.Millisecond, TLSFallback: true,
		StartupErr: &pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "app"`},
	}
	refused := diag.AddrReport{
		Network: "tcp", Addr: "127.0.0.3:5433", Dial: diag.DialRefused, DialTime: 80 * time.Microsecond,
		DialErr: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
	}
	return &diag.Report{
		User: "app", Database: "appdb", Config: sampleConfig(),
		Hosts: []diag.HostReport{
			{Host: "db.example", Port: 5432, Addrs: []diag.AddrReport{timedOut, standby}},
			{Host: "db2.example", Port: 5433, Addrs: []diag.AddrReport{badAuth, refused}},
			{Host: "gone.example", Port: 5432, ResolveErr: errors.New("lookup gone.example: no such host")},
		},
	}
}

func TestWriteProbeText(t *testing.T) {
	var b bytes.Buffer
	writeProbeText(&b, sampleReport(), tlsPlan{known: true, first: true, fallback: true})
	out := b.String()
	for _, want := range []string{
		"pgfast probe: user=app database=appdb target_session_attrs=read-write load_balance_hosts=disable\n",
		"settings: connect_timeout=10s per address, keepalives idle=10s interval=5s count=3, tcp_user_timeout=25s\n",
		"host db.example:5432: 2 addresses\n",
		"  [::1]:5432      timed out in 10s: no answer within connect_timeout=10s\n",
		"  127.0.0.1:5432  connected in 310µs\n",
		"      TLS:     TLS 1.3 TLS_AES_128_GCM_SHA256\n",
		"      auth:    ok (connected, TLS, startup and auth in 4.2ms)\n",
		"      server:  PostgreSQL 15.18, standby, default_transaction_read_only=on\n",
		"      socket:  SO_KEEPALIVE=on TCP_KEEPIDLE=10s TCP_KEEPINTVL=5s TCP_KEEPCNT=3 TCP_USER_TIMEOUT=25s\n",
		"      TLS:     none: the server refused TLS, continued without it (sslmode=prefer)\n",
		`      auth:    failed: FATAL: password authentication failed for user "app" (SQLSTATE 28P01)` + "\n",
		"  127.0.0.3:5433  refused in 80µs: connection refused\n",
		"host gone.example:5432: cannot resolve: lookup gone.example: no such host\n",
		"\nno usable server: 1 server(s) reached, none accepted by target_session_attrs=read-write\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestVerdictText(t *testing.T) {
	rep := sampleReport()
	rep.Pick = &diag.Pick{Host: 0, Addr: 1}
	if got, want := verdictText(rep), "usable: target_session_attrs=read-write picks 127.0.0.1:5432 (host db.example:5432)"; got != want {
		t.Errorf("verdict %q, want %q", got, want)
	}
	rep = &diag.Report{Config: sampleConfig(), Hosts: []diag.HostReport{{Addrs: []diag.AddrReport{{Dial: diag.DialRefused}}}}}
	if got := verdictText(rep); !strings.Contains(got, "no address accepted a connection") {
		t.Errorf("verdict %q", got)
	}
}

func TestProbeJSON(t *testing.T) {
	rep := sampleReport()
	rep.Pick = &diag.Pick{Host: 0, Addr: 1}
	var b bytes.Buffer
	if err := writeProbeJSON(&b, rep, false); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	var back probeJSON
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !back.Usable || back.Picked == nil || back.Picked.Address != "127.0.0.1:5432" || back.Picked.Host != "db.example:5432" {
		t.Errorf("picked: %+v", back)
	}
	a := back.Hosts[0].Addresses
	if a[0].Dial != "timed out" || a[0].FailedAt != "dial" || a[0].DialMS != 10000 {
		t.Errorf("timed out address: %+v", a[0])
	}
	if a[1].Role != "standby" || a[1].ReadOnly == nil || !*a[1].ReadOnly || a[1].Socket.TCPUserTimeoutMS != 25000 || a[1].DialMS != 0.312 {
		t.Errorf("standby address: %+v", a[1])
	}
	if b := back.Hosts[1].Addresses[0]; b.SQLState != "28P01" || b.FailedAt != "startup" || !b.TLSFallback {
		t.Errorf("bad auth address: %+v", b)
	}
	if back.Hosts[2].ResolveError == "" || back.Hosts[2].Addresses == nil {
		t.Errorf("unresolved host: %+v", back.Hosts[2])
	}
	var interrupted bytes.Buffer
	_ = writeProbeJSON(&interrupted, rep, true)
	if !strings.Contains(interrupted.String(), `"interrupted": true`) || !strings.Contains(interrupted.String(), `"usable": false`) {
		t.Errorf("interrupted report:\n%s", interrupted.String())
	}
}

// explainFor renders explain for the worked example's settings with a given
// tcp_user_timeout, on the kernel's compiled-in defaults.
func explainFor(userTimeout time.Duration, keepalives bool) string {
	c := sampleConfig()
	c.TCPUserTimeout, c.Keepalives = userTimeout, keepalives
	info := &diag.DSNInfo{Backend: pgfast.PGX, Config: c, User: "app", Database: "appdb",
		Forwarded: map[string]string{"keepalives_idle": "10", "tcp_user_timeout": "16000"}}
	var b bytes.Buffer
	writeExplainText(&b, explain(info, timeline.LinuxDefaults(), []string{"tcp_rto_min_us unreadable: assuming 200ms"}))
	return b.String()
}

func TestExplainWorkedExamples(t *testing.T) {
	for ut, want := range map[time.Duration][]string{
		// pgfast's dead-peer watcher: the first keep-alive probe (10s)
		// unanswered, the window (tcp_user_timeout, else 10s) passed, both
		// seen for a second at a 500ms tick.
		0:                       {"11.5s", "dead-peer window"},
		4500 * time.Millisecond: {"11.5s", "dead-peer window"},
		16 * time.Second:        {"16.5s", "dead-peer window"},
		37 * time.Second:        {"37.5s", "dead-peer window"},
	} {
		out := explainFor(ut, true)
		if got := rowOf(out, "(b) dead peer, idle connection"); len(got) < 1 || got[0] != want[0] {
			t.Errorf("tcp_user_timeout %v: (b) row %q, want pgfast %s:\n%s", ut, got, want[0], out)
		}
		if got := rowOf(out, "ended by"); len(got) < 1 {
			t.Errorf("no ended-by row:\n%s", out)
		}
		if !strings.Contains(out, "(b) the peer dies") {
			t.Errorf("no (b) timeline:\n%s", out)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasSuffix(line, " ") || len(line) > 130 {
				t.Errorf("untidy line %q", line)
			}
		}
	}
	out := explainFor(16*time.Second, true)
	for _, want := range []string{
		"  TCP_USER_TIMEOUT                    16s               not set              not set\n",
		"  (a) connect, blackholed address     10s               127s (2m7s)          127s (2m7s)\n",
		"  (c) dead peer, unacknowledged data  16.2s             924.6s (15m24.6s)    924.6s (15m24.6s)\n",
		"  (d) slow server, zero window        16s               never                never\n",
		"  tcp_rto_min_us unreadable: assuming 200ms\n",
		"      10s  keep-alive probe 1 sent; unanswered\n",
		"    16.5s  silent >= 16s (dead-peer window), probe unanswered >= 1s: socket shut down, address evicted (host-level)\n",
		"closes it at 20s (tcp_user_timeout)",
		"only that connection (the server was heard recently: connection-level, no eviction)",
		"Without connect_timeout the kernel would end it at 16s (tcp_user_timeout).",
		"  pgx, lib/pq: no connect_timeout, TCP_USER_TIMEOUT not set\n",
		"    127s  6 SYN retransmissions unanswered (tcp_syn_retries=6): connect() fails (ETIMEDOUT)\n",
		"  - pgx and lib/pq do not know keepalives_idle:",
		"  - tcp_user_timeout=16000 reaches the server",
		"  - connect_timeout is unset (or 0)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if out := explainFor(16*time.Second, false); !strings.Contains(rowOfLine(out, "(b) dead peer"), "never") {
		t.Errorf("keepalives=0: (b) not never:\n%s", out)
	}
}

func rowOfLine(out, label string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, label) {
			return line
		}
	}
	return ""
}

func TestLiveText(t *testing.T) {
	at := time.Unix(1000, 0)
	e := diag.Event{Stage: diag.Dialing, Host: "localhost:5432", Addr: "[::1]:5432", At: at}
	if got, want := liveText(e, at.Add(1300*time.Millisecond)), "pgfast probe: [::1]:5432: dialing… 1.3s"; got != want {
		t.Errorf("liveText = %q, want %q", got, want)
	}
	e = diag.Event{Stage: diag.Resolving, Host: "localhost:5432", At: at}
	if got, want := liveText(e, at.Add(2*time.Millisecond)), "pgfast probe: localhost:5432: resolving… 0.0s"; got != want {
		t.Errorf("liveText = %q, want %q", got, want)
	}
	var b bytes.Buffer
	l := startLiveLine(&b) // both writers hold the line's mutex
	l.update(e)
	l.stop()
	if !strings.HasSuffix(b.String(), "\r\x1b[K") || !strings.Contains(b.String(), "resolving") {
		t.Errorf("live line output %q: want the line drawn, then cleared", b.String())
	}
	var nilLine *liveLine
	nilLine.update(e) // must not panic
	nilLine.stop()
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		dsn     string
		json    bool
		wantErr bool
	}{
		{nil, "", false, false},
		{[]string{"host=a"}, "host=a", false, false},
		{[]string{"--json", "host=a"}, "host=a", true, false},
		{[]string{"host=a", "--json"}, "host=a", true, false},
		{[]string{"host=a", "host=b"}, "", false, true},
		{[]string{"--nope"}, "", false, true},
	} {
		fs := flag.NewFlagSet("probe", flag.ContinueOnError)
		j := fs.Bool("json", false, "")
		dsn, code, ok := parseArgs(fs, tc.args, io.Discard, io.Discard)
		if ok == tc.wantErr || dsn != tc.dsn || *j != tc.json || tc.wantErr && code != exitUsage {
			t.Errorf("%q: dsn %q json %v ok %v code %d", tc.args, dsn, *j, ok, code)
		}
	}
}

func TestWriteWrapped(t *testing.T) {
	var b bytes.Buffer
	writeWrapped(&b, "  - ", "    ", strings.Repeat("word ", 40))
	for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if len(line) > wrapWidth || !strings.HasPrefix(line, "  ") {
			t.Errorf("line %q", line)
		}
	}
}

func TestFormatElapsed(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                   "0s",
		312345 * time.Nanosecond:            "310µs",
		42123 * time.Microsecond:            "42.1ms",
		10*time.Second + 4*time.Millisecond: "10.004s",
	} {
		if got := formatElapsed(d); got != want {
			t.Errorf("formatElapsed(%v) = %q, want %q", d, got, want)
		}
	}
}
