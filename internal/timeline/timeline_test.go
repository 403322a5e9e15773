package timeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	ms = time.Millisecond
	s  = time.Second
)

// kernel is LinuxDefaults with syn_retries 6 and no linear SYN timeouts.
func kernel() Kernel { return LinuxDefaults() }

// worked is the socket of the reference examples: keepalives idle 10s,
// interval 5s, count 3.
func worked(userTimeout time.Duration) Socket {
	return Socket{Keepalive: true, KeepIdle: 10 * s, KeepIntvl: 5 * s, KeepCount: 3, UserTimeout: userTimeout}
}

func TestIdleWorkedExamples(t *testing.T) {
	for _, tc := range []struct {
		userTimeout time.Duration
		want        time.Duration
		cause       string
		probes      int
	}{
		{0, 25 * s, CauseKeepaliveCount, 3},
		{4500 * ms, 15 * s, CauseUserTimeout, 1},
		{16000 * ms, 20 * s, CauseUserTimeout, 2},
		{37000 * ms, 40 * s, CauseUserTimeout, 6},
		{20000 * ms, 20 * s, CauseUserTimeout, 2}, // exactly at a probe time: closed there
		{10000 * ms, 15 * s, CauseUserTimeout, 1}, // never before the first probe went out
		{1 * ms, 15 * s, CauseUserTimeout, 1},
	} {
		r := Idle(kernel(), worked(tc.userTimeout))
		if r.Detected != tc.want || r.Cause != tc.cause || r.Never {
			t.Errorf("user timeout %v: detected %v by %s, want %v by %s", tc.userTimeout, r.Detected, r.Cause, tc.want, tc.cause)
		}
		if got := countPrefix(r.Events, "keep-alive probe"); got != tc.probes {
			t.Errorf("user timeout %v: %d probes in the timeline, want %d:\n%s", tc.userTimeout, got, tc.probes, dump(r.Events))
		}
		if last := r.Events[len(r.Events)-1]; last.At != tc.want {
			t.Errorf("user timeout %v: last event at %v, want %v", tc.userTimeout, last.At, tc.want)
		}
	}
}

func TestIdleProbes(t *testing.T) {
	for _, tc := range []struct {
		idle, interval, ut time.Duration
		want               int
	}{
		{10 * s, 5 * s, 4500 * ms, 1},
		{10 * s, 5 * s, 16 * s, 2},
		{10 * s, 5 * s, 37 * s, 6},
		{10 * s, 5 * s, 15 * s, 1},
		{10 * s, 5 * s, 15*s + ms, 2},
		{2 * s, 3 * s, 9 * s, 3}, // the background article's production values: 11s
		{10 * s, 0, 37 * s, 1},
	} {
		if got := IdleProbes(tc.idle, tc.interval, tc.ut); got != tc.want {
			t.Errorf("IdleProbes(%v, %v, %v) = %d, want %d", tc.idle, tc.interval, tc.ut, got, tc.want)
		}
	}
}

func TestIdleDefaultsAndOff(t *testing.T) {
	k := kernel()
	r := Idle(k, Socket{Keepalive: true})
	if want := 7200*s + 9*75*s; r.Detected != want {
		t.Errorf("kernel defaults: %v, want %v", r.Detected, want)
	}
	if r := Idle(k, GoDefaultSocket()); r.Detected != 150*s {
		t.Errorf("Go's defaults: %v, want 150s", r.Detected)
	}
	if r := Idle(k, Socket{Keepalive: false, UserTimeout: 5 * s}); !r.Never || r.String() != "never" {
		t.Errorf("keep-alive off: %+v, want never", r)
	}
}

func TestIdleLongTimelineIsShortened(t *testing.T) {
	sock := Socket{Keepalive: true, KeepIdle: s, KeepIntvl: s, KeepCount: 3, UserTimeout: 2147483647 * ms}
	start := time.Now()
	r := Idle(kernel(), sock)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("took %v", elapsed)
	}
	if want := 2147484 * s; r.Detected != want {
		t.Errorf("detected %v, want %v", r.Detected, want)
	}
	if len(r.Events) > headEvents+tailEvents+2 {
		t.Errorf("%d events, want a shortened timeline:\n%s", len(r.Events), dump(r.Events))
	}
	if !strings.Contains(dump(r.Events), "more like the above") {
		t.Errorf("no ellipsis event:\n%s", dump(r.Events))
	}
	for i := 1; i < len(r.Events); i++ {
		if r.Events[i].At < r.Events[i-1].At {
			t.Errorf("events out of order:\n%s", dump(r.Events))
		}
	}
}

func TestConnect(t *testing.T) {
	linear := kernel()
	linear.SynLinearTimeouts = 4
	short := kernel()
	short.SynRetries = 2
	shortLinear := short
	shortLinear.SynLinearTimeouts = 4
	for _, tc := range []struct {
		name    string
		k       Kernel
		ut, ct  time.Duration
		want    time.Duration
		cause   string
		retrans int
	}{
		{"syn_retries=6", kernel(), 0, 0, 127 * s, CauseSynRetries, 6},
		{"syn_retries=6 linear=4", linear, 0, 0, 131 * s, CauseSynRetries, 10},
		{"user timeout caps", kernel(), 25 * s, 0, 25 * s, CauseUserTimeout, 4},
		{"user timeout below first expiry", kernel(), 500 * ms, 0, s, CauseUserTimeout, 1},
		{"large user timeout cannot extend", kernel(), 300 * s, 0, 127 * s, CauseSynRetries, 6},
		{"connect_timeout caps", kernel(), 25 * s, 10 * s, 10 * s, CauseConnectTimeout, 3},
		{"connect_timeout at an expiry", kernel(), 0, 7 * s, 7 * s, CauseConnectTimeout, 2},
		{"connect_timeout after the kernel", kernel(), 0, 200 * s, 127 * s, CauseSynRetries, 6},
		// Measured on Linux 6.18 with tcp_syn_retries=2 (socket or sysctl):
		{"measured 2", short, 0, 0, 7 * s, CauseSynRetries, 2},
		{"measured 2 linear=4", shortLinear, 0, 0, 7 * s, CauseSynRetries, 5},
		{"measured 2 linear=4 ut=10s", shortLinear, 10 * s, 0, 10 * s, CauseUserTimeout, 6},
		{"measured 2 ut=10s", short, 10 * s, 0, 7 * s, CauseSynRetries, 2},
		{"measured 2 ut=2.5s", short, 2500 * ms, 0, 2500 * ms, CauseUserTimeout, 1},
	} {
		r := Connect(tc.k, Socket{UserTimeout: tc.ut}, tc.ct)
		if r.Detected != tc.want || r.Cause != tc.cause {
			t.Errorf("%s: %v by %s, want %v by %s\n%s", tc.name, r.Detected, r.Cause, tc.want, tc.cause, dump(r.Events))
		}
		if got := countPrefix(r.Events, "SYN retransmission"); got != tc.retrans {
			t.Errorf("%s: %d retransmissions, want %d\n%s", tc.name, got, tc.retrans, dump(r.Events))
		}
	}
}

func TestConnectTimeline(t *testing.T) {
	r := Connect(kernel(), Socket{}, 0)
	var at []time.Duration
	for _, e := range r.Events {
		at = append(at, e.At/s)
	}
	want := []time.Duration{0, 1, 3, 7, 15, 31, 63, 127}
	if len(at) != len(want) {
		t.Fatalf("events at %v s, want %v", at, want)
	}
	for i := range want {
		if at[i] != want[i] {
			t.Fatalf("events at %v s, want %v", at, want)
		}
	}
}

func TestUnacked(t *testing.T) {
	short := kernel()
	short.Retries2 = 3
	for _, tc := range []struct {
		name    string
		k       Kernel
		ut      time.Duration
		want    time.Duration
		cause   string
		retrans int
	}{
		{"retries2=15", kernel(), 0, 924600 * ms, CauseRetries2, 15},
		{"user timeout 1200", kernel(), 1200 * ms, 1400 * ms, CauseUserTimeout, 2},
		{"user timeout 100", kernel(), 100 * ms, 300 * ms, CauseUserTimeout, 1},
		{"pgfast default 25s", kernel(), 25 * s, 25200 * ms, CauseUserTimeout, 6},
		{"user timeout beyond retries2", kernel(), 1000 * s, 1000200 * ms, CauseUserTimeout, 16},
		{"retries2=3", short, 0, 3 * s, CauseRetries2, 3},
	} {
		r := Unacked(tc.k, Socket{UserTimeout: tc.ut})
		if r.Detected != tc.want || r.Cause != tc.cause {
			t.Errorf("%s: %v by %s, want %v by %s\n%s", tc.name, r.Detected, r.Cause, tc.want, tc.cause, dump(r.Events))
		}
		if got := retransmissions(r.Events); got != tc.retrans {
			t.Errorf("%s: %d retransmissions, want %d\n%s", tc.name, got, tc.retrans, dump(r.Events))
		}
	}
}

func TestUnackedTimeline(t *testing.T) {
	r := Unacked(kernel(), Socket{})
	// The reference timeline: 0.2, 0.6, 1.4, 3.0, 6.2, 12.6, 25.4, 51.0,
	// 102.2, 204.6, then every 120s up to 924.6s.
	want := []time.Duration{0, 200, 600, 1400, 3000, 6200, 12600, 25400, 51000, 102200, 204600, 324600, 444600, 564600, 684600, 804600, 924600}
	var got []time.Duration
	for _, e := range r.Events {
		if !strings.HasPrefix(e.Text, "…") {
			got = append(got, e.At/ms)
		}
	}
	// The middle is shortened; compare head and tail.
	if got[0] != want[0] || got[7] != want[7] || got[len(got)-1] != want[len(want)-1] || got[len(got)-2] != want[len(want)-2] {
		t.Errorf("events at %v ms, want %v", got, want)
	}
}

func TestModelTimeout(t *testing.T) {
	for _, tc := range []struct {
		n         int
		base, max time.Duration
		want      time.Duration
	}{
		{15, 200 * ms, 120 * s, 924600 * ms},
		{6, s, 120 * s, 127 * s},
		{8, s, 120 * s, 127*s + 240*s},
		{3, 200 * ms, 120 * s, 3 * s},
		{0, s, 120 * s, s},
	} {
		if got := modelTimeout(tc.n, tc.base, tc.max); got != tc.want {
			t.Errorf("modelTimeout(%d, %v, %v) = %v, want %v", tc.n, tc.base, tc.max, got, tc.want)
		}
	}
}

func TestReadKernel(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tcp_syn_retries", "3")
	write("tcp_syn_linear_timeouts", "4")
	write("tcp_retries2", "8")
	write("tcp_rto_min_us", "50000")
	write("tcp_keepalive_time", "60")
	write("tcp_keepalive_intvl", "garbage")
	k, notes := ReadKernel(dir)
	want := LinuxDefaults()
	want.SynRetries, want.SynLinearTimeouts, want.Retries2 = 3, 4, 8
	want.RTOMin, want.KeepaliveTime = 50*ms, 60*s
	if k != want {
		t.Errorf("ReadKernel = %+v, want %+v", k, want)
	}
	joined := strings.Join(notes, "\n")
	for _, name := range []string{"tcp_keepalive_intvl", "tcp_keepalive_probes", "tcp_rto_max_ms"} {
		if !strings.Contains(joined, name) {
			t.Errorf("notes do not mention %s:\n%s", name, joined)
		}
	}
	if strings.Contains(joined, "tcp_syn_retries") {
		t.Errorf("notes mention a setting that was read:\n%s", joined)
	}
	if _, notes := ReadKernel(filepath.Join(dir, "missing")); len(notes) != 8 {
		t.Errorf("missing dir: %d notes, want 8", len(notes))
	}
}

func TestSaneKernel(t *testing.T) {
	k := Kernel{} // all zero: must not loop or divide by zero
	for _, r := range []Result{Connect(k, Socket{}, 0), Unacked(k, Socket{}), Idle(k, Socket{Keepalive: true})} {
		if r.Detected <= 0 {
			t.Errorf("zero kernel: %+v", r)
		}
	}
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "0s",
		200 * ms:                "200ms",
		1400 * ms:               "1.4s",
		25 * s:                  "25s",
		924600 * ms:             "924.6s",
		1500 * time.Microsecond: "1.5ms",
	} {
		if got := Format(d); got != want {
			t.Errorf("Format(%v) = %q, want %q", d, got, want)
		}
	}
	if got, want := FormatLong(924600*ms), "924.6s (15m24.6s)"; got != want {
		t.Errorf("FormatLong = %q, want %q", got, want)
	}
	if got, want := FormatLong(25*s), "25s"; got != want {
		t.Errorf("FormatLong = %q, want %q", got, want)
	}
}

func countPrefix(events []Event, prefix string) int {
	n := 0
	for _, e := range events {
		if strings.HasPrefix(e.Text, prefix) {
			n++
		}
	}
	return n
}

// retransmissions counts retransmission events, including those the
// shortened timeline stands for.
func retransmissions(events []Event) int {
	n := countPrefix(events, "retransmission")
	for _, e := range events {
		var skipped int
		if _, err := fmt.Sscanf(e.Text, "… %d more like the above …", &skipped); err == nil {
			n += skipped
		}
	}
	return n
}

func dump(events []Event) string {
	var b strings.Builder
	for _, e := range events {
		b.WriteString(Format(e.At) + "\t" + e.Text + "\n")
	}
	return b.String()
}
