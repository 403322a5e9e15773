package pgtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ErrNoPgBouncer is returned by StartPgBouncer when the pgbouncer program
// is not installed (Debian's package: apt-get install pgbouncer).
var ErrNoPgBouncer = errors.New("pgtest: pgbouncer not installed")

// PgBouncer databases served in front of a Server, each for Database and
// connecting as the client's user with trust.
const (
	// BouncerSessionDB is the PgBouncer database in session pooling mode.
	BouncerSessionDB = "pgfast_session"
	// BouncerTransactionDB is the PgBouncer database in transaction
	// pooling mode.
	BouncerTransactionDB = "pgfast_transaction"
)

// PgBouncer is a running pgbouncer in front of one Server, listening on a
// free loopback port, running as the server's account. Stop it when done.
type PgBouncer struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// bouncerStartTimeout bounds the wait for pgbouncer to listen.
const bouncerStartTimeout = 10 * time.Second

// StartPgBouncer starts pgbouncer for s (which must be running) with
// BouncerSessionDB and BouncerTransactionDB, auth_type trust and TrustUser
// in its userlist.
func StartPgBouncer(s *Server) (*PgBouncer, error) {
	prog := lookTool("pgbouncer")
	if _, err := exec.LookPath(prog); err != nil {
		return nil, ErrNoPgBouncer
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("pgtest: choosing a port: %w", err)
	}
	dir := filepath.Join(s.baseDir, "pgbouncer-"+strconv.Itoa(port))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := s.run.chown(dir); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	backend := fmt.Sprintf("host=%s port=%d dbname=%s", s.host, s.port, Database)
	ini := fmt.Sprintf(`[databases]
%[1]s = %[3]s pool_mode=session
%[2]s = %[3]s pool_mode=transaction

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[4]d
unix_socket_dir =
auth_type = trust
auth_file = %[5]s
logfile = %[6]s
pidfile = %[7]s
ignore_startup_parameters = extra_float_digits
max_client_conn = 200
default_pool_size = 20
`, BouncerSessionDB, BouncerTransactionDB, backend, port,
		filepath.Join(dir, "userlist.txt"), filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	if err := s.run.writeFile(filepath.Join(dir, "userlist.txt"), fmt.Sprintf("%q \"\"\n", TrustUser)); err != nil {
		return nil, err
	}
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	if err := s.run.writeFile(iniPath, ini); err != nil {
		return nil, err
	}
	cmd := exec.Command(prog, iniPath)
	cmd.Dir = dir
	cmd.Env = (&runner{dir: dir}).env()
	cmd.SysProcAttr = groupLeader(s.run.as)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pgtest: starting pgbouncer: %w", err)
	}
	b := &PgBouncer{port: port, dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(b.done) }()
	deadline := time.Now().Add(bouncerStartTimeout)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return b, nil
		}
		select {
		case <-b.done:
			return nil, fmt.Errorf("pgtest: pgbouncer exited at start:\n%s", tail(b.Log()))
		default:
		}
		if time.Now().After(deadline) {
			b.Stop()
			return nil, fmt.Errorf("pgtest: pgbouncer not listening after %s:\n%s", bouncerStartTimeout, tail(b.Log()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Port returns the port pgbouncer listens on, at 127.0.0.1.
func (b *PgBouncer) Port() int { return b.port }

// Log returns pgbouncer's log, for failure messages.
func (b *PgBouncer) Log() string {
	data, _ := os.ReadFile(filepath.Join(b.dir, "pgbouncer.log"))
	return string(data)
}

// Stop terminates pgbouncer (SIGTERM, an immediate shutdown; SIGKILL after 5 s) and waits
// for it to exit.
func (b *PgBouncer) Stop() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
		return
	case <-time.After(5 * time.Second):
	}
	_ = killGroup(b.cmd.Process.Pid)
	<-b.done
}
