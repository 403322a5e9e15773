package timeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Kernel holds the Linux TCP settings the timelines depend on.
type Kernel struct {
	SynRetries        int           // net.ipv4.tcp_syn_retries
	SynLinearTimeouts int           // net.ipv4.tcp_syn_linear_timeouts (Linux 6.5+; 0 before)
	SynInitialRTO     time.Duration // TCP_TIMEOUT_INIT, the first SYN's retransmission timeout
	Retries2          int           // net.ipv4.tcp_retries2
	RTOMin            time.Duration // net.ipv4.tcp_rto_min_us, TCP_RTO_MIN: the first data RTO assumed
	RTOMax            time.Duration // net.ipv4.tcp_rto_max_ms, TCP_RTO_MAX
	KeepaliveTime     time.Duration // net.ipv4.tcp_keepalive_time: idle time when the socket sets none
	KeepaliveIntvl    time.Duration // net.ipv4.tcp_keepalive_intvl
	KeepaliveProbes   int           // net.ipv4.tcp_keepalive_probes
}

// LinuxDefaults returns the kernel's compiled-in defaults. They are the
// fallbacks of ReadKernel, except SynLinearTimeouts, which is 0: a kernel
// without the sysctl (before 6.5) behaves as if it were 0.
func LinuxDefaults() Kernel {
	return Kernel{
		SynRetries:        6,
		SynLinearTimeouts: 0,
		SynInitialRTO:     time.Second,
		Retries2:          15,
		RTOMin:            200 * time.Millisecond,
		RTOMax:            120 * time.Second,
		KeepaliveTime:     7200 * time.Second,
		KeepaliveIntvl:    75 * time.Second,
		KeepaliveProbes:   9,
	}
}

// sane replaces settings that would make the models meaningless (zero or
// negative timeouts, absurd retry counts) with the defaults.
func (k Kernel) sane() Kernel {
	d := LinuxDefaults()
	if k.SynInitialRTO <= 0 {
		k.SynInitialRTO = d.SynInitialRTO
	}
	if k.RTOMin <= 0 {
		k.RTOMin = d.RTOMin
	}
	if k.RTOMax < k.RTOMin {
		k.RTOMax = max(d.RTOMax, k.RTOMin)
	}
	if k.KeepaliveTime <= 0 {
		k.KeepaliveTime = d.KeepaliveTime
	}
	if k.KeepaliveIntvl <= 0 {
		k.KeepaliveIntvl = d.KeepaliveIntvl
	}
	if k.KeepaliveProbes <= 0 {
		k.KeepaliveProbes = d.KeepaliveProbes
	}
	k.SynRetries = min(max(k.SynRetries, 1), 255)
	k.SynLinearTimeouts = min(max(k.SynLinearTimeouts, 0), 255)
	k.Retries2 = min(max(k.Retries2, 1), maxRetries2)
	return k
}

// ProcDir is where ReadKernel normally reads the sysctls from.
const ProcDir = "/proc/sys/net/ipv4"

// sysctl describes one setting ReadKernel reads.
type sysctl struct {
	name  string
	unit  time.Duration // 0: a plain count
	count *int
	dur   *time.Duration
}

// ReadKernel reads the TCP sysctls from dir (normally ProcDir) on top of
// LinuxDefaults. Every setting that cannot be read keeps its default and is
// named in the returned notes. SynInitialRTO is not a sysctl and is always 1s.
func ReadKernel(dir string) (Kernel, []string) {
	k := LinuxDefaults()
	settings := []sysctl{
		{name: "tcp_syn_retries", count: &k.SynRetries},
		{name: "tcp_syn_linear_timeouts", count: &k.SynLinearTimeouts},
		{name: "tcp_retries2", count: &k.Retries2},
		{name: "tcp_rto_min_us", unit: time.Microsecond, dur: &k.RTOMin},
		{name: "tcp_rto_max_ms", unit: time.Millisecond, dur: &k.RTOMax},
		{name: "tcp_keepalive_time", unit: time.Second, dur: &k.KeepaliveTime},
		{name: "tcp_keepalive_intvl", unit: time.Second, dur: &k.KeepaliveIntvl},
		{name: "tcp_keepalive_probes", count: &k.KeepaliveProbes},
	}
	var notes []string
	for _, s := range settings {
		n, err := readInt(filepath.Join(dir, s.name))
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s unreadable (%v): assuming %s", s.name, err, s.current()))
			continue
		}
		s.set(n)
	}
	return k, notes
}

// current formats the setting's present value, for notes.
func (s sysctl) current() string {
	if s.count != nil {
		return strconv.Itoa(*s.count)
	}
	return Format(*s.dur)
}

// set stores n, read from the sysctl file, in the setting.
func (s sysctl) set(n int64) {
	if s.count != nil {
		*s.count = int(n)
		return
	}
	*s.dur = time.Duration(n) * s.unit
}

// readInt reads a file holding one non-negative decimal integer.
func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, fmt.Errorf("no such sysctl")
		}
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("unexpected content %q", strings.TrimSpace(string(b)))
	}
	return n, nil
}

// Socket holds the TCP options set on a socket. Zero keep-alive timings mean
// the kernel's defaults; a zero UserTimeout means TCP_USER_TIMEOUT is not set.
type Socket struct {
	Keepalive   bool          // SO_KEEPALIVE
	KeepIdle    time.Duration // TCP_KEEPIDLE
	KeepIntvl   time.Duration // TCP_KEEPINTVL
	KeepCount   int           // TCP_KEEPCNT
	UserTimeout time.Duration // TCP_USER_TIMEOUT
}

// Effective returns s with the kernel's defaults filled in for unset
// keep-alive timings.
func (s Socket) Effective(k Kernel) Socket {
	if s.KeepIdle <= 0 {
		s.KeepIdle = k.KeepaliveTime
	}
	if s.KeepIntvl <= 0 {
		s.KeepIntvl = k.KeepaliveIntvl
	}
	if s.KeepCount <= 0 {
		s.KeepCount = k.KeepaliveProbes
	}
	return s
}

// GoDefaultSocket is what a plain net.Dialer sets (the raw drivers' dialers):
// keep-alive on, 15s idle, 15s interval, 9 probes, no TCP_USER_TIMEOUT.
func GoDefaultSocket() Socket {
	return Socket{Keepalive: true, KeepIdle: 15 * time.Second, KeepIntvl: 15 * time.Second, KeepCount: 9}
}
