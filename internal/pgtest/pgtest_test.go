//go:build linux

package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requirePostgres skips the test when no PostgreSQL binaries are installed.
func requirePostgres(t *testing.T) {
	t.Helper()
	if _, err := FindBinDir(); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// client runs psql as a TCP client of s, as an application would, inside
// netns when it is not empty. It returns psql's combined, trimmed output.
func client(t *testing.T, s *Server, netns, user, password, sql string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable connect_timeout=5",
		s.Host(), s.Port(), user, Database)
	argv := []string{filepath.Join(s.BinDir(), "psql"), "-X", "-q", "-w", "-At", "-v", "ON_ERROR_STOP=1", "-d", conn, "-c", sql}
	if netns != "" {
		argv = append([]string{lookTool("ip"), "netns", "exec", netns}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// A missing password file keeps ~/.pgpass out of the way.
	cmd.Env = append(cmd.Env, "PGPASSFILE="+filepath.Join(s.SocketDir(), "no-such-pgpass"), "LC_ALL=C")
	if password != "" {
		cmd.Env = append(cmd.Env, "PGPASSWORD="+password)
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// mustClient is client that fails the test on error and checks the output.
func mustClient(t *testing.T, s *Server, netns, user, password, sql, want string) {
	t.Helper()
	out, err := client(t, s, netns, user, password, sql)
	if err != nil {
		t.Fatalf("psql as %s: %v\n%s\nserver log:\n%s", user, err, out, tail(s.Log()))
	}
	if out != want {
		t.Fatalf("psql as %s: %q: got %q, want %q", user, sql, out, want)
	}
}

// mustQuery runs s.Query and checks its output.
func mustQuery(t *testing.T, s *Server, sql, want string) {
	t.Helper()
	out, err := s.Query(sql)
	if err != nil {
		t.Fatalf("Query(%q): %v", sql, err)
	}
	if out != want {
		t.Fatalf("Query(%q) = %q, want %q", sql, out, want)
	}
}

// mustExec runs s.Exec and fails the test on error.
func mustExec(t *testing.T, s *Server, sql string) {
	t.Helper()
	if err := s.Exec(sql); err != nil {
		t.Fatalf("Exec(%q): %v", sql, err)
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
	}
}

// ipv6Loopback reports whether ::1 is usable on this machine.
func ipv6Loopback() bool {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func TestDSNAndURL(t *testing.T) {
	s := &Server{host: "::1", port: 5433}
	tests := []struct{ got, want string }{
		{s.DSN(TrustUser), "host=::1 port=5433 user=pgfast_trust dbname=pgfast sslmode=disable"},
		{s.DSN(ScramUser), "host=::1 port=5433 user=pgfast_scram dbname=pgfast sslmode=disable password=s3cret-pw"},
		{s.URL(TrustUser), "postgres://pgfast_trust@[::1]:5433/pgfast?sslmode=disable"},
		{s.URL(ScramUser), "postgres://pgfast_scram:s3cret-pw@[::1]:5433/pgfast?sslmode=disable"},
	}
	s = &Server{host: "127.0.0.2", port: 6000}
	tests = append(tests, struct{ got, want string }{
		s.URL(Superuser), "postgres://postgres@127.0.0.2:6000/pgfast?sslmode=disable",
	})
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestOptionsHost(t *testing.T) {
	for addrs, want := range map[string]string{
		"":                "127.0.0.1",
		"127.0.0.2":       "127.0.0.2",
		"::1, 127.0.0.1":  "::1",
		"*":               "127.0.0.1",
		"0.0.0.0,::":      "127.0.0.1",
		"::":              "::1",
		"localhost,[::1]": "localhost",
	} {
		if got := (Options{ListenAddresses: addrs}).host(); got != want {
			t.Errorf("host for %q = %q, want %q", addrs, got, want)
		}
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	for _, settings := range []map[string]string{
		{"work_mem = 1MB\nfsync": "on"},
		{"work_mem": "1MB\nfsync = on"},
	} {
		if s, err := New(Options{Settings: settings}); err == nil {
			s.Cleanup()
			t.Errorf("New accepted settings %q", settings)
		}
	}
	if s, err := New(Options{Port: 70000}); err == nil {
		s.Cleanup()
		t.Error("New accepted port 70000")
	}
}

func TestQuoteConf(t *testing.T) {
	if got, want := quoteConf(`it's a \ test`), `'it''s a \\ test'`; got != want {
		t.Errorf("quoteConf = %s, want %s", got, want)
	}
}

func TestFindBinDir(t *testing.T) {
	dir, err := FindBinDir()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	if !hasPrograms(dir) {
		t.Fatalf("FindBinDir() = %s, which lacks %v", dir, requiredPrograms)
	}
	if got := versionOf("/usr/lib/postgresql/9.6/bin"); len(got) != 2 || got[0] != 9 || got[1] != 6 {
		t.Errorf("versionOf(9.6) = %v", got)
	}
}

func TestServerLifecycle(t *testing.T) {
	requirePostgres(t)
	t.Parallel()

	opts := Options{Settings: map[string]string{"work_mem": "7MB", "pgtest.note": "it's \\ pgtest"}}
	if ipv6Loopback() {
		opts.ListenAddresses = "127.0.0.1,::1"
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Cleanup)

	// Open before the server is up: the address is known, nothing answers.
	if s.Host() != "127.0.0.1" || s.Port() == 0 {
		t.Fatalf("Host, Port = %s, %d", s.Host(), s.Port())
	}
	if out, err := client(t, s, "", TrustUser, "", "SELECT 1"); err == nil {
		t.Fatalf("connected before Start: %s", out)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}

	t.Run("auth", func(t *testing.T) {
		mustClient(t, s, "", TrustUser, "", "SELECT current_user", TrustUser)
		mustClient(t, s, "", Superuser, "", "SELECT current_user", Superuser)
		mustClient(t, s, "", ScramUser, ScramPassword,
			"CREATE TABLE scram_owned(i int); SELECT current_user", ScramUser)
		mustQuery(t, s, "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = '"+ScramUser+"'", "SCRAM-SHA-256$")
		mustQuery(t, s, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '"+Database+"'", TrustUser)

		out, err := client(t, s, "", ScramUser, "wrong-pw", "SELECT 1")
		if err == nil || !strings.Contains(out, "password authentication failed") {
			t.Errorf("wrong password: err=%v, output=%q", err, out)
		}
		if out, err := client(t, s, "", ScramUser, "", "SELECT 1"); err == nil {
			t.Errorf("no password: connected: %q", out)
		}
	})

	t.Run("settings", func(t *testing.T) {
		mustQuery(t, s, "SHOW work_mem", "7MB")
		mustQuery(t, s, "SHOW pgtest.note", `it's \ pgtest`)
		mustQuery(t, s, "SHOW unix_socket_directories", s.SocketDir())
		mustQuery(t, s, "SHOW max_connections", "300")
		mustQuery(t, s, "SHOW fsync", "off")
		if opts.ListenAddresses != "" {
			v6 := &Server{host: "::1", port: s.port, binDir: s.binDir}
			mustClient(t, v6, "", TrustUser, "", "SELECT inet_client_addr()", "::1")
		}
	})

	t.Run("exec errors", func(t *testing.T) {
		err := s.Exec("SELECT 1; SELECT * FROM no_such_table; SELECT 2")
		if err == nil || !strings.Contains(err.Error(), "no_such_table") {
			t.Errorf("Exec error = %v, want one naming no_such_table", err)
		}
		mustExec(t, s, "CREATE TABLE kept(v text); INSERT INTO kept VALUES ('x')")
	})

	t.Run("os user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("not root")
		}
		info, err := os.Stat(fmt.Sprintf("/proc/%d", s.runningPID()))
		if err != nil {
			t.Fatal(err)
		}
		if uid := info.Sys().(*syscall.Stat_t).Uid; uid != s.run.as.uid {
			t.Errorf("postmaster runs as uid %d, want %d", uid, s.run.as.uid)
		}
	})

	t.Run("restart", func(t *testing.T) {
		before := s.runningPID()
		if err := s.Restart(); err != nil {
			t.Fatal(err)
		}
		if after := s.runningPID(); after == 0 || after == before {
			t.Errorf("postmaster PID %d -> %d", before, after)
		}
		mustClient(t, s, "", TrustUser, "", "SELECT v FROM kept", "x")
	})

	t.Run("stop and start", func(t *testing.T) {
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := s.Stop(); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		if out, err := client(t, s, "", TrustUser, "", "SELECT 1"); err == nil {
			t.Fatalf("connected to a stopped server: %s", out)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		mustClient(t, s, "", ScramUser, ScramPassword, "SELECT count(*) FROM scram_owned", "0")
	})

	t.Run("killed", func(t *testing.T) {
		pid := s.runningPID()
		procs := append(children(pid), pid)
		if !killServer(pid, 5*time.Second) {
			t.Fatal("postmaster survived SIGKILL")
		}
		for _, p := range procs {
			if !waitGone(p, 5*time.Second) {
				t.Errorf("process %d still alive", p)
			}
		}
		if err := s.Stop(); err != nil {
			t.Errorf("Stop with a stale postmaster.pid: %v", err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		mustQuery(t, s, "SELECT v FROM kept", "x")
	})

	t.Run("cleanup", func(t *testing.T) {
		// Leave a client connected so there is a backend to get rid of.
		done := make(chan struct{})
		go func() {
			defer close(done)
			client(t, s, "", TrustUser, "", "SELECT pg_sleep(30)")
		}()
		waitFor(t, 5*time.Second, func() bool {
			out, err := s.Query("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'")
			return err == nil && out == "1"
		})
		pid := s.runningPID()
		procs := append(children(pid), pid)

		s.Cleanup()
		s.Cleanup()
		for _, p := range procs {
			if isPostgres(p) {
				t.Errorf("process %d still alive after Cleanup", p)
			}
		}
		if _, err := os.Stat(s.SocketDir()); !os.IsNotExist(err) {
			t.Errorf("temporary directory still there: %v", err)
		}
		if err := s.Start(); err == nil {
			t.Error("Start after Cleanup succeeded")
		}
		if err := s.Stop(); err != nil {
			t.Errorf("Stop after Cleanup: %v", err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("client still connected after Cleanup")
		}
	})
}

func TestStandby(t *testing.T) {
	requirePostgres(t)
	t.Parallel()

	primary := StartT(t, Options{})
	mustExec(t, primary, "CREATE TABLE r(i int); INSERT INTO r VALUES (1)")

	standby, err := primary.StartStandby(Options{ListenAddresses: "127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(standby.Cleanup)
	if standby.Host() != "127.0.0.2" || standby.Port() == primary.Port() {
		t.Fatalf("standby at %s:%d, primary at %s:%d", standby.Host(), standby.Port(), primary.Host(), primary.Port())
	}
	mustQuery(t, standby, "SELECT pg_is_in_recovery()", "t")
	mustClient(t, standby, "", TrustUser, "", "SELECT count(*) FROM r", "1")

	waitRows := func(want string) {
		t.Helper()
		waitFor(t, 10*time.Second, func() bool {
			out, err := standby.Query("SELECT count(*) FROM r")
			return err == nil && out == want
		})
	}
	mustExec(t, primary, "INSERT INTO r VALUES (2)")
	waitRows("2")

	if err := standby.Restart(); err != nil {
		t.Fatal(err)
	}
	mustExec(t, primary, "INSERT INTO r VALUES (3)")
	waitRows("3")

	if err := standby.Exec("INSERT INTO r VALUES (4)"); err == nil ||
		!strings.Contains(err.Error(), "read-only transaction") {
		t.Fatalf("write on standby: %v", err)
	}
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	mustQuery(t, standby, "SELECT pg_is_in_recovery()", "f")
	mustClient(t, standby, "", TrustUser, "", "INSERT INTO r VALUES (4); SELECT count(*) FROM r", "4")
}

// netns creates a network namespace with loopback up and deletes it when
// the test ends.
func netns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: network namespaces need root")
	}
	var b [4]byte
	rand.Read(b[:])
	name := "pgtest-" + hex.EncodeToString(b[:])
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(lookTool("ip"), args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", name)
	t.Cleanup(func() { ip("netns", "delete", name) })
	ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
	return name
}

func TestNetNS(t *testing.T) {
	requirePostgres(t)
	ns := netns(t)
	t.Parallel()

	s := StartT(t, Options{NetNS: ns})

	// The postmaster is inside the namespace...
	var want, got syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+ns, &want); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", s.runningPID()), &got); err != nil {
		t.Fatal(err)
	}
	if got.Ino != want.Ino {
		t.Errorf("postmaster is in netns inode %d, want %d", got.Ino, want.Ino)
	}

	// ...so its TCP port answers there and not in ours.
	mustClient(t, s, ns, TrustUser, "", "SELECT inet_server_addr()", "127.0.0.1")
	mustClient(t, s, ns, ScramUser, ScramPassword, "SELECT current_user", ScramUser)
	if out, err := client(t, s, "", TrustUser, "", "SELECT 1"); err == nil {
		t.Errorf("reached the namespaced server from outside: %s", out)
	}

	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	mustQuery(t, s, "SELECT current_database()", Database)
	mustClient(t, s, ns, TrustUser, "", "SELECT 1", "1")

	// A standby outside the namespace replicates through the Unix socket.
	mustExec(t, s, "CREATE TABLE across(i int); INSERT INTO across VALUES (42)")
	standby, err := s.StartStandby(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(standby.Cleanup)
	mustClient(t, standby, "", TrustUser, "", "SELECT i FROM across", "42")
}

func TestStartFailure(t *testing.T) {
	requirePostgres(t)
	t.Parallel()

	s, err := New(Options{Settings: map[string]string{"shared_buffers": "lots"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Cleanup()
	err = s.Start()
	if err == nil || !strings.Contains(err.Error(), `invalid value for parameter "shared_buffers"`) {
		t.Fatalf("Start with a bad setting: %v, want an error quoting the server log", err)
	}
	s.Cleanup()
	if _, err := os.Stat(s.SocketDir()); !os.IsNotExist(err) {
		t.Errorf("temporary directory still there: %v", err)
	}
}
