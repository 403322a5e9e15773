package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/netfault"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// These tests build the pgfast binary once and run it.

// envBin passes the built binary to the test process RunInNamespace starts.
const envBin = "PGFAST_CLI_TEST_BIN"

var (
	binPath string // the built binary
	binErr  error
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if p := os.Getenv(envBin); p != "" && netfault.Inside() {
		binPath = p
	} else {
		dir, err := os.MkdirTemp("", "pgfast-cli-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binPath = filepath.Join(dir, "pgfast")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, "go", "build", "-o", binPath, ".").CombinedOutput()
		cancel()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	defer stopServer()
	return m.Run()
}

// bin returns the built binary or fails the test.
func bin(t *testing.T) string {
	t.Helper()
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// result is the outcome of one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// runBin runs the binary with args (and extra environment), bounded.
func runBin(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("running pgfast %v: %v", args, err)
	}
	return r
}

// The shared server, started by the first test that needs it.
var (
	srvOnce sync.Once
	srv     *pgtest.Server
	srvErr  error
)

// server returns a running throwaway PostgreSQL, or skips (fails under
// PGFAST_REQUIRE_DB=1) when there is none.
func server(t *testing.T) *pgtest.Server {
	t.Helper()
	srvOnce.Do(func() {
		srv, srvErr = pgtest.New(pgtest.Options{})
		if srvErr == nil {
			srvErr = srv.Start()
		}
	})
	if srvErr != nil {
		if os.Getenv("PGFAST_REQUIRE_DB") != "1" && errors.Is(srvErr, pgtest.ErrNoPostgres) {
			t.Skip(srvErr)
		}
		t.Fatal(srvErr)
	}
	return srv
}

func stopServer() {
	if srv != nil {
		srv.Cleanup()
	}
}

// freePort returns a loopback TCP port nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestCLIProbeServer(t *testing.T) {
	s := server(t)
	r := runBin(t, nil, "probe", s.DSN(pgtest.TrustUser))
	if r.code != exitOK {
		t.Fatalf("want exit 0: %v", r)
	}
	for _, want := range []string{
		fmt.Sprintf("host 127.0.0.1:%d", s.Port()),
		"server:  PostgreSQL 15",
		", primary, default_transaction_read_only=off",
		"socket:  SO_KEEPALIVE=on TCP_KEEPIDLE=10s TCP_KEEPINTVL=5s TCP_KEEPCNT=3 TCP_USER_TIMEOUT=not set",
		"usable: target_session_attrs=any picks 127.0.0.1:",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%v", want, r)
		}
	}
	wantRe(t, r, fmt.Sprintf(`(?m)^  127\.0\.0\.1:%d +connected in [0-9.]+[µm]?s$`, s.Port()))
	if r.stderr != "" { // not a terminal: no progress line
		t.Errorf("stderr not empty:\n%v", r)
	}
	t.Logf("\n%s", r.stdout)
}

// TestCLIProbeInterrupt interrupts a probe stuck in the startup phase (a
// listener that accepts and never answers): it must stop at once.
func TestCLIProbeInterrupt(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered, until the test ends
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t), "probe", fmt.Sprintf("host=127.0.0.1 port=%d user=x sslmode=disable connect_timeout=15", port))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	elapsed := time.Since(start)
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitInterrupted {
		t.Fatalf("want exit 130 after Ctrl+C, got %v:\n%v", err, r)
	}
	if elapsed > 2*time.Second {
		t.Errorf("stopped %v after Ctrl+C", elapsed)
	}
	if !strings.Contains(r.stderr, "interrupted") || !strings.Contains(r.stdout, "auth:    failed: interrupted") {
		t.Errorf("want an interrupted report:\n%v", r)
	}
}

func TestCLIProbeSettingsFromDSN(t *testing.T) {
	s := server(t)
	r := runBin(t, nil, "probe", s.DSN(pgtest.TrustUser)+" keepalives_idle=7 keepalives_interval=2 keepalives_count=4 tcp_user_timeout=9000")
	if want := "TCP_KEEPIDLE=7s TCP_KEEPINTVL=2s TCP_KEEPCNT=4 TCP_USER_TIMEOUT=9s"; r.code != exitOK || !strings.Contains(r.stdout, want) {
		t.Errorf("want exit 0 and %q:\n%v", want, r)
	}
}

func TestCLIProbeEnvironment(t *testing.T) {
	s := server(t)
	env := []string{"PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", s.Port()), "PGUSER=" + pgtest.TrustUser,
		"PGDATABASE=" + pgtest.Database, "PGSSLMODE=disable"}
	r := runBin(t, env, "probe")
	if r.code != exitOK || !strings.Contains(r.stdout, "user="+pgtest.TrustUser) {
		t.Errorf("DSN from PG* variables: want exit 0:\n%v", r)
	}
}

func TestCLIProbeJSON(t *testing.T) {
	s := server(t)
	// The flag may follow the DSN.
	r := runBin(t, nil, "probe", s.URL(pgtest.ScramUser), "--json")
	if r.code != exitOK {
		t.Fatalf("want exit 0: %v", r)
	}
	var got probeJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("--json output does not parse: %v\n%v", err, r)
	}
	if !got.Usable || got.Picked == nil || len(got.Hosts) != 1 || len(got.Hosts[0].Addresses) != 1 {
		t.Fatalf("report: %+v", got)
	}
	a := got.Hosts[0].Addresses[0]
	if a.Dial != "connected" || !a.Authenticated || a.Role != "primary" || a.ReadOnly == nil || *a.ReadOnly ||
		!strings.HasPrefix(a.ServerVersion, "15") || a.Socket == nil || a.Socket.TCPUserTimeoutMS != 0 { // not set by default
		t.Errorf("address: %+v", a)
	}
	if got.User != pgtest.ScramUser || got.Settings.ConnectTimeoutMS != 10000 {
		t.Errorf("report: %+v", got)
	}
	if strings.Contains(r.stdout+r.stderr, pgtest.ScramPassword) {
		t.Errorf("the password is printed:\n%v", r)
	}
}

func TestCLIProbePasswordNeverPrinted(t *testing.T) {
	s := server(t)
	const wrong = "Wr0ng-Pass-9876"
	for _, dsn := range []string{
		s.DSN(pgtest.ScramUser),
		strings.Replace(s.DSN(pgtest.ScramUser), pgtest.ScramPassword, wrong, 1),
		strings.Replace(s.URL(pgtest.ScramUser), pgtest.ScramPassword, wrong, 1),
	} {
		for _, args := range [][]string{{"probe", dsn}, {"probe", "--json", dsn}, {"explain", dsn}} {
			r := runBin(t, nil, args...)
			if strings.Contains(r.stdout+r.stderr, pgtest.ScramPassword) || strings.Contains(r.stdout+r.stderr, wrong) {
				t.Errorf("%s prints the password:\n%v", args[0], r)
			}
			if args[0] == "probe" && strings.Contains(dsn, wrong) {
				if r.code != exitNoServer || !strings.Contains(r.stdout, "28P01") {
					t.Errorf("wrong password: want exit 1 and SQLSTATE 28P01:\n%v", r)
				}
			}
		}
	}
}

func TestCLIProbeRefused(t *testing.T) {
	port := freePort(t)
	r := runBin(t, nil, "probe", fmt.Sprintf("host=127.0.0.1 port=%d user=nobody connect_timeout=2", port))
	if r.code != exitNoServer {
		t.Fatalf("want exit 1: %v", r)
	}
	wantRe(t, r, fmt.Sprintf(`(?m)^  127\.0\.0\.1:%d +refused in [0-9.]+[µm]?s: connection refused$`, port))
	wantRe(t, r, `(?m)^no usable server`)
}

func TestCLIBadDSN(t *testing.T) {
	const secret = "Sekr1t-Pw-31337"
	for _, dsn := range []string{
		"host=127.0.0.1 password=" + secret + " keepalives_idle=soon",
		"postgres://app:" + secret + "@127.0.0.1:notaport/app",
		"host=127.0.0.1 password=" + secret + " pgfast_min_conn=3",
		"host=127.0.0.1 password='" + secret + "' target_session_attrs=whatever",
	} {
		for _, cmd := range []string{"probe", "explain"} {
			r := runBin(t, nil, cmd, dsn)
			if r.code != exitUsage || !strings.Contains(r.stderr, "invalid DSN") {
				t.Errorf("%s %q: want exit 2 and an invalid DSN message:\n%v", cmd, dsn, r)
			}
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("%s prints the password:\n%v", cmd, r)
			}
		}
	}
}

func TestCLIUsage(t *testing.T) {
	if r := runBin(t, nil); r.code != exitUsage || !strings.Contains(r.stderr, "usage: pgfast") {
		t.Errorf("no arguments: %v", r)
	}
	if r := runBin(t, nil, "help"); r.code != exitOK || !strings.Contains(r.stdout, "pgfast probe") && !strings.Contains(r.stdout, "probe [--json]") {
		t.Errorf("help: %v", r)
	}
	if r := runBin(t, nil, "frobnicate"); r.code != exitUsage {
		t.Errorf("unknown command: %v", r)
	}
	if r := runBin(t, nil, "probe", "host=a password=x", "host=b"); r.code != exitUsage || strings.Contains(r.stderr, "password=x") {
		t.Errorf("two DSNs: %v", r)
	}
	if r := runBin(t, nil, "explain", "--backend", "odbc", "host=a"); r.code != exitUsage {
		t.Errorf("bad backend: %v", r)
	}
}

func TestCLIExplainWorkedExample(t *testing.T) {
	dsn := "host=127.0.0.1 user=app keepalives_idle=10 keepalives_interval=5 keepalives_count=3 tcp_user_timeout=16000"
	for _, backend := range []string{"pgx", "pq"} {
		r := runBin(t, nil, "explain", "--backend", backend, dsn)
		if r.code != exitOK {
			t.Fatalf("want exit 0: %v", r)
		}
		idle := rowOf(r.stdout, "(b) dead peer, idle connection")
		// The dead-peer watcher (window = tcp_user_timeout) ends it before
		// the kernel's next keep-alive expiry at 20s.
		if len(idle) < 2 || idle[0] != "16.5s" {
			t.Errorf("--backend %s: (b) row %q, want pgfast at 16.5s:\n%v", backend, idle, r)
		}
		for _, want := range []string{
			"10s  keep-alive probe 1 sent",
			"16.5s  silent >= 16s (dead-peer window)",
			"TCP_USER_TIMEOUT overrides keepalives_count=3",
			"SQLSTATE 42704",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("--backend %s: output lacks %q:\n%v", backend, want, r)
			}
		}
	}
}

// wantRe fails t unless r's stdout matches the regular expression re.
func wantRe(t *testing.T, r result, re string) {
	t.Helper()
	if !regexp.MustCompile(re).MatchString(r.stdout) {
		t.Errorf("output does not match %s:\n%v", re, r)
	}
}

// rowOf returns the cells after label in the summary table line starting
// with label.
func rowOf(out, label string) []string {
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), label); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}

// TestCLIProbeBlackhole probes "localhost" in a network namespace where ::1
// drops every packet to the server's port: ::1 times out after
// connect_timeout, 127.0.0.1 answers.
func TestCLIProbeBlackhole(t *testing.T) {
	t.Setenv(envBin, bin(t))
	netfault.RunInNamespace(t, "^TestCLIProbeBlackholeInside$", nil, 40*time.Second)
}

func TestCLIProbeBlackholeInside(t *testing.T) {
	if !netfault.Inside() {
		t.Skip("run by TestCLIProbeBlackhole inside a network namespace")
	}
	s, err := pgtest.New(pgtest.Options{ListenAddresses: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Cleanup()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	remove, err := netfault.Drop(netfault.Rule{Addr: "::1", Port: s.Port()})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	dsn := fmt.Sprintf("host=localhost port=%d user=%s dbname=%s sslmode=disable connect_timeout=1", s.Port(), pgtest.TrustUser, pgtest.Database)
	start := time.Now()
	r := runBin(t, nil, "probe", dsn)
	elapsed := time.Since(start)
	if r.code != exitOK {
		t.Fatalf("want exit 0: %v", r)
	}
	for _, want := range []string{
		fmt.Sprintf("host localhost:%d: 2 addresses", s.Port()),
		"usable: target_session_attrs=any picks 127.0.0.1:",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%v", want, r)
		}
	}
	wantRe(t, r, fmt.Sprintf(`(?m)^  \[::1\]:%d +timed out in 1(\.[0-9]+)?s: no answer within connect_timeout=1s$`, s.Port()))
	wantRe(t, r, fmt.Sprintf(`(?m)^  127\.0\.0\.1:%d +connected in`, s.Port()))
	if elapsed > 10*time.Second {
		t.Errorf("took %v with connect_timeout=1", elapsed)
	}
	t.Logf("took %v\n%s", elapsed, r.stdout)
}
