package netfault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// netnsRunDir is where `ip netns` keeps the bind mounts naming namespaces.
const netnsRunDir = "/var/run/netns"

// defaultTimeout bounds the child test process when the caller passes a
// timeout <= 0.
const defaultTimeout = 60 * time.Second

// testHookNamespace, when set (by this package's tests), is called with the
// name of each namespace RunInNamespace creates.
var testHookNamespace func(name string)

// Available reports whether fault tests can run here: on Linux, as root,
// with `ip` and `nft` installed, and with a freshly created namespace
// offering working nftables and both 127.0.0.1 and ::1 on lo. The string
// explains the verdict either way. The probe runs once per process; inside a
// netfault namespace Available reports true without probing.
func Available() (bool, string) {
	if Inside() {
		return true, "running inside netfault network namespace " + Name()
	}
	return probeOnce()
}

var probeOnce = sync.OnceValues(probe)

// probe creates and destroys a throwaway namespace to find out whether
// everything RunInNamespace and Drop need works.
func probe() (bool, string) {
	if runtime.GOOS != "linux" {
		return false, "network namespaces need Linux, this is " + runtime.GOOS
	}
	if uid := os.Geteuid(); uid != 0 {
		return false, fmt.Sprintf("network namespaces and nftables need root, running as uid %d", uid)
	}
	ip, err := lookTool("ip")
	if err != nil {
		return false, "iproute2 is not installed: " + err.Error()
	}
	nftPath, err := lookTool("nft")
	if err != nil {
		return false, "nftables is not installed (apt-get install nftables): " + err.Error()
	}
	name, err := newName()
	if err != nil {
		return false, err.Error()
	}
	hosts, err := formatHosts(nil)
	if err != nil {
		return false, err.Error()
	}
	defer destroyNamespace(name)
	if err := createNamespace(name, hosts); err != nil {
		return false, "cannot set up a network namespace: " + err.Error()
	}
	if _, err := runCmd(ip, "netns", "exec", name, nftPath, "add table inet pgfast_probe"); err != nil {
		return false, "nftables does not work in a network namespace: " + err.Error()
	}
	return true, fmt.Sprintf("running as root with %s and %s; network namespaces, nftables, 127.0.0.0/8 and ::1 work", ip, nftPath)
}

// RunInNamespace runs the tests of this test binary matching pattern in a
// fresh network namespace and reports their outcome as part of t.
//
// It creates a namespace named "pgfast-<random>" whose only interface is lo
// (up, with 127.0.0.0/8 and ::1), and writes its hosts file from hosts
// (name to loopback addresses, see [SetHosts]; "localhost" maps to ::1 and
// 127.0.0.1 unless hosts names it). It then re-executes the test binary as
//
//	ip netns exec <name> <test binary> -test.run <pattern> -test.v -test.count=1 -test.timeout <t>
//
// with [EnvInside]=<name> in its environment, streaming the child's output
// into t's log line by line. The child is killed, with its whole process
// group, when timeout (or t's own deadline, if nearer) expires; its
// -test.timeout is a little shorter so that it can report a hang itself
// first. Whatever happens, the namespace is torn down afterwards: processes
// still in it are killed, it is deleted and /etc/netns/<name> is removed.
//
// t fails if the child exits non-zero, times out or runs no test; the
// child's PASS/FAIL summary lines are reported in any case. The tests
// matching pattern must skip themselves when ![Inside], and pattern must not
// match the test calling RunInNamespace (it would skip there anyway).
//
// When fault tests cannot run here (see [Available]) RunInNamespace skips t,
// or fails it if [EnvRequire] is "1".
func RunInNamespace(t *testing.T, pattern string, hosts map[string][]string, timeout time.Duration) {
	t.Helper()
	if Inside() {
		t.Skipf("netfault: already inside network namespace %s; RunInNamespace does not nest", Name())
	}
	if ok, why := Available(); !ok {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("netfault: fault tests are required (%s=1) but cannot run: %s", EnvRequire, why)
		}
		t.Skipf("netfault: fault tests cannot run: %s", why)
	}
	if pattern == "" {
		t.Fatal("netfault: RunInNamespace needs a -test.run pattern")
	}
	hostsText, err := formatHosts(hosts)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("netfault: cannot find the test binary: %v", err)
	}
	name, err := newName()
	if err != nil {
		t.Fatal(err)
	}

	defer func() {
		if err := destroyNamespace(name); err != nil {
			t.Errorf("netfault: cleaning up namespace %s: %v", name, err)
		}
	}()
	if err := createNamespace(name, hostsText); err != nil {
		t.Fatalf("netfault: %v", err)
	}
	if testHookNamespace != nil {
		testHookNamespace(name)
	}
	runChild(t, name, exe, pattern, childTimeout(t, timeout))
}

// childTimeout returns timeout (or the default), shortened to fit into t's
// deadline.
func childTimeout(t *testing.T, timeout time.Duration) time.Duration {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	if deadline, ok := t.Deadline(); ok {
		if left := time.Until(deadline) - 2*time.Second; left < timeout {
			timeout = max(left, time.Second)
		}
	}
	return timeout
}

// runChild re-executes the test binary exe in namespace name and fails t if
// it does not pass.
func runChild(t *testing.T, name, exe, pattern string, timeout time.Duration) {
	t.Helper()
	ip, err := lookTool("ip")
	if err != nil {
		t.Fatalf("netfault: %v", err)
	}
	// Leave the child time to print its own timeout panic before the kill.
	grace := min(timeout/10, 2*time.Second)
	args := []string{"netns", "exec", name, exe,
		"-test.run", pattern, "-test.v", "-test.count=1", "-test.timeout", (timeout - grace).String()}
	if testing.Short() {
		args = append(args, "-test.short")
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, ip, args...)
	cmd.Env = childEnv(name)
	// `ip netns exec` execs the test binary in place, so the child leads a
	// process group that also holds anything it starts.
	cmd.SysProcAttr = groupLeader()
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 2 * time.Second
	log := &childLog{t: t}
	cmd.Stdout = log
	cmd.Stderr = log

	t.Logf("netfault: running -test.run %q in network namespace %s (timeout %v)", pattern, name, timeout)
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start).Round(time.Millisecond)
	summary := log.finish()

	switch {
	case ctx.Err() == context.DeadlineExceeded:
		t.Errorf("netfault: child test process killed after the %v timeout; summary:\n%s", timeout, summary)
	case err != nil:
		t.Errorf("netfault: child test process failed after %v: %v; summary:\n%s", elapsed, err, summary)
	case log.noTests:
		t.Errorf("netfault: -test.run %q matched no test in the child process", pattern)
	default:
		t.Logf("netfault: child test process passed in %v; summary:\n%s", elapsed, summary)
	}
}

// childEnv returns this process's environment with EnvInside set to name.
func childEnv(name string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvInside+"=") {
			env = append(env, kv)
		}
	}
	return append(env, EnvInside+"="+name)
}

// childLog is the child's stdout and stderr: it logs each line to t and
// remembers the summary lines.
type childLog struct {
	t       *testing.T
	mu      sync.Mutex
	partial []byte
	summary []string
	noTests bool
	done    bool
}

// maxLine bounds how much of an unterminated line childLog buffers.
const maxLine = 64 << 10

func (l *childLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return len(p), nil // t may be finished; drop late output
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.line(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	if len(l.partial) > maxLine {
		l.line(string(l.partial))
		l.partial = nil
	}
	return len(p), nil
}

// line logs one line of child output and classifies it.
func (l *childLog) line(s string) {
	l.t.Log("netns| " + s)
	trimmed := strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(trimmed, "--- PASS"), strings.HasPrefix(trimmed, "--- FAIL"),
		strings.HasPrefix(trimmed, "--- SKIP"), trimmed == "PASS", trimmed == "FAIL",
		strings.HasPrefix(trimmed, "panic:"):
		l.summary = append(l.summary, s)
	case strings.HasPrefix(trimmed, "testing: warning: no tests to run"):
		l.summary = append(l.summary, s)
		l.noTests = true
	}
}

// finish logs any unterminated last line, stops logging and returns the
// summary lines.
func (l *childLog) finish() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.line(string(l.partial))
		l.partial = nil
	}
	l.done = true
	if len(l.summary) == 0 {
		return "(no summary lines)"
	}
	return strings.Join(l.summary, "\n")
}

// newName returns a fresh namespace name "pgfast-<12 hex digits>".
func newName() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("netfault: %w", err)
	}
	return namePrefix + hex.EncodeToString(b[:]), nil
}

// etcNetns tracks whether this process created /etc/netns, so that it can
// remove it again once its last namespace is gone.
var etcNetns struct {
	sync.Mutex
	created bool
	live    int
}

// createNamespace creates namespace name with lo up, checks that
// 127.0.0.0/8 and ::1 are local there, and writes its hosts file. On error
// the caller must still call destroyNamespace.
func createNamespace(name, hostsText string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid namespace name %q", name)
	}
	ip, err := lookTool("ip")
	if err != nil {
		return err
	}

	// Hosts file first: `ip netns exec` bind-mounts it when it starts.
	etcNetns.Lock()
	etcNetns.live++
	if _, err := os.Stat(etcNetnsDir); errors.Is(err, os.ErrNotExist) {
		etcNetns.created = true
	}
	dir := filepath.Join(etcNetnsDir, name)
	err = os.MkdirAll(dir, 0o755)
	if errors.Is(err, os.ErrNotExist) { // another process removed /etc/netns meanwhile
		err = os.MkdirAll(dir, 0o755)
	}
	etcNetns.Unlock()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hostsText), 0o644); err != nil {
		return err
	}

	if _, err := runCmd(ip, "netns", "add", name); err != nil {
		return err
	}
	if _, err := runCmd(ip, "-n", name, "link", "set", "lo", "up"); err != nil {
		return err
	}
	// The local route for 127.0.0.0/8 makes every 127.x.y.z bindable, not
	// just 127.0.0.1; ::1 is missing when IPv6 is disabled.
	for _, addr := range []string{"127.0.0.1", "127.0.0.2", "::1"} {
		out, err := runCmd(ip, "-n", name, "route", "get", addr)
		if err != nil {
			return fmt.Errorf("%s is not usable in the namespace: %w", addr, err)
		}
		if !strings.HasPrefix(out, "local "+addr+" ") {
			return fmt.Errorf("%s is not a local address in the namespace: %s", addr, out)
		}
	}
	return nil
}

// destroyNamespace kills every process left in namespace name, deletes it
// and removes /etc/netns/<name>. It copes with a partially created or
// missing namespace.
func destroyNamespace(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("refusing to destroy namespace %q: not created by netfault", name)
	}
	var errs []error
	if _, err := os.Stat(filepath.Join(netnsRunDir, name)); err == nil {
		if err := killNamespaceProcesses(name); err != nil {
			errs = append(errs, err)
		}
		if ip, err := lookTool("ip"); err != nil {
			errs = append(errs, err)
		} else if _, err := runCmd(ip, "netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(etcNetnsDir, name)); err != nil {
		errs = append(errs, err)
	}

	etcNetns.Lock()
	etcNetns.live--
	if etcNetns.live == 0 && etcNetns.created {
		// Fails harmlessly if another process still has a namespace there.
		if os.Remove(etcNetnsDir) == nil {
			etcNetns.created = false
		}
	}
	etcNetns.Unlock()
	return errors.Join(errs...)
}

// killNamespaceProcesses SIGKILLs the processes in namespace name until none
// is left (killed processes may have forked meanwhile).
func killNamespaceProcesses(name string) error {
	ip, err := lookTool("ip")
	if err != nil {
		return err
	}
	var pids []int
	for range 40 {
		out, err := runCmd(ip, "netns", "pids", name)
		if err != nil {
			return err
		}
		pids = pids[:0]
		for _, field := range strings.Fields(out) {
			pid, err := strconv.Atoi(field)
			if err != nil || pid <= 1 || pid == os.Getpid() {
				continue
			}
			pids = append(pids, pid)
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = killPID(pid) // it may be gone already
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("processes %v survive in namespace %s", pids, name)
}

// listNamespaces returns the names `ip netns list` reports.
func listNamespaces() ([]string, error) {
	ip, err := lookTool("ip")
	if err != nil {
		return nil, err
	}
	out, err := runCmd(ip, "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if fields := strings.Fields(line); len(fields) > 0 {
			names = append(names, fields[0])
		}
	}
	return names, nil
}

// lookTool finds an administration command in PATH or, since PATH often
// lacks them for non-login shells, in /usr/sbin and /sbin.
func lookTool(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		path := filepath.Join(dir, name)
		if info, err := os.Stat(path); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH, /usr/sbin or /sbin", name)
}

// runCmd runs a short administrative command and returns its combined
// output; errors include that output.
func runCmd(path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", filepath.Base(path), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
