// Package testdb starts a throwaway PostgreSQL server for the compatibility
// tests: initdb into a temporary directory, pg_ctl start on a free loopback
// port, pg_ctl stop and removal on Stop.
//
// The server trusts every local connection and is tuned for speed, not
// durability. As root, the PostgreSQL programs run as the "postgres" OS user
// (PostgreSQL refuses to run as root). Every program is bounded by a timeout.
package testdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrNoPostgres is returned (wrapped) by Start when initdb and pg_ctl cannot be found.
var ErrNoPostgres = errors.New("testdb: PostgreSQL server programs (initdb, pg_ctl) not found")

// Superuser is the role initdb creates; it owns the "postgres" database.
const Superuser = "postgres"

// Server is a running throwaway PostgreSQL.
type Server struct {
	Port int
	bin  string
	dir  string  // temporary directory: data/, server.log, the Unix socket
	cred *osUser // nil: the current user
}

// osUser is the OS user the server runs as.
type osUser struct{ Uid, Gid uint32 }

// Start creates and starts a server. Call Stop when done, also after a
// failed test.
func Start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgfast-compat-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, cred: cred}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			s.Stop()
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if _, err := s.run("initdb", "-D", data, "-U", Superuser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		s.Stop()
		return nil, err
	}
	conf := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"+
		"fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n", dir)
	if err := appendFile(filepath.Join(data, "postgresql.conf"), conf); err != nil {
		s.Stop()
		return nil, err
	}
	// The port is free when chosen but another process may take it before
	// the server binds it: try a few.
	for try := 0; ; try++ {
		if s.Port, err = freePort(); err != nil {
			s.Stop()
			return nil, err
		}
		_, err = s.run("pg_ctl", "start", "-D", data, "-l", filepath.Join(dir, "server.log"),
			"-w", "-t", "30", "-o", "-p "+strconv.Itoa(s.Port))
		if err == nil {
			return s, nil
		}
		if try == 2 || !strings.Contains(s.log(), "could not bind") {
			s.Stop()
			return nil, fmt.Errorf("%w\nserver log:\n%s", err, s.log())
		}
	}
}

// DSN returns a key=value DSN for the superuser on database dbname over TCP.
func (s *Server) DSN(dbname string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", s.Port, Superuser, dbname)
}

// Stop stops the server at once and removes its directory. It is safe to
// call on a server that failed to start.
func (s *Server) Stop() {
	data := filepath.Join(s.dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
		_, _ = s.run("pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", "-t", "10")
	}
	_ = os.RemoveAll(s.dir)
}

// run runs one of the server's programs, as the server's OS user, bounded
// by a minute; an error carries the program's output.
func (s *Server) run(prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir, "LC_ALL=C"} // no PG* variables
	cmd.SysProcAttr = procAttr(s.cred)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("testdb: %s %s: %w\n%s", prog, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

func (s *Server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return string(b)
}

// binDir finds initdb and pg_ctl: next to pg_ctl in PATH, else in the
// newest Debian-style /usr/lib/postgresql/VERSION/bin.
func binDir() (string, error) {
	var dirs []string
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
	}
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	major := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	sort.Slice(versioned, func(i, j int) bool { return major(versioned[i]) > major(versioned[j]) })
	for _, d := range append(dirs, versioned...) {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", ErrNoPostgres
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// serverCredential is the "postgres" OS user when running as root, nil
// (the current user) otherwise.
func serverCredential() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("testdb: as root, PostgreSQL must run as the postgres OS user: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("testdb: postgres OS user: %w", err)
	}
	return &osUser{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}
