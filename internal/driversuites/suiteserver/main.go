// Command suiteserver runs a command next to a throwaway PostgreSQL set up
// the way lib/pq's own CI sets up its server (lib/pq's compose.yaml and
// testdata/postgres): lib/pq's pg_hba.conf, its testdata/ssl certificates,
// its roles (testdata/postgres/docker-entrypoint-initdb.d/20-config.sql) and a
// superuser pqgo owning a database pqgo.
//
// scripts/driver-suites runs it inside a private network and mount namespace,
// where port 5432 is free and /etc/hosts maps lib/pq's host names to
// 127.0.0.1. Usage:
//
//	suiteserver -pq DIR [-port 5432] [-db NAME]... -- COMMAND [ARG]...
//
// DIR is a copy of lib/pq's module. Each -db creates one more database owned
// by pqgo. The command's exit status becomes suiteserver's; the server is
// stopped and removed whatever happens.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// dbList collects repeated -db flags.
type dbList []string

func (d *dbList) String() string     { return strings.Join(*d, ",") }
func (d *dbList) Set(v string) error { *d = append(*d, v); return nil }

func main() {
	pqDir := flag.String("pq", "", "copy of lib/pq's module (for testdata/)")
	port := flag.Int("port", 5432, "TCP port on 127.0.0.1")
	var dbs dbList
	flag.Var(&dbs, "db", "extra database owned by pqgo (repeatable)")
	flag.Parse()
	if *pqDir == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: suiteserver -pq DIR [-port N] [-db NAME]... -- COMMAND [ARG]...")
		os.Exit(2)
	}
	os.Exit(run(*pqDir, *port, dbs, flag.Args()))
}

// run starts the server, runs argv and returns its exit status.
func run(pqDir string, port int, dbs []string, argv []string) int {
	s, err := pgtest.New(pgtest.Options{ListenAddresses: "127.0.0.1", Port: port})
	if err != nil {
		fmt.Fprintln(os.Stderr, "suiteserver:", err)
		return 1
	}
	defer s.Cleanup()
	if err := setUp(s, pqDir, dbs); err != nil {
		fmt.Fprintln(os.Stderr, "suiteserver:", err)
		fmt.Fprintln(os.Stderr, s.Log())
		return 1
	}

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "PGPORT="+strconv.Itoa(port))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "suiteserver:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-sigs:
			_ = cmd.Process.Signal(sig)
		case err := <-done:
			var exit *exec.ExitError
			switch {
			case err == nil:
				return 0
			case errors.As(err, &exit) && exit.ExitCode() > 0:
				return exit.ExitCode()
			default:
				fmt.Fprintln(os.Stderr, "suiteserver:", err)
				return 1
			}
		}
	}
}

// setUp applies lib/pq's CI configuration to the stopped server s, starts
// it, and creates the databases.
func setUp(s *pgtest.Server, pqDir string, dbs []string) error {
	sslDir := filepath.Join(s.SocketDir(), "ssl")
	if err := copyCerts(filepath.Join(pqDir, "testdata", "ssl"), sslDir); err != nil {
		return err
	}
	hba, err := os.ReadFile(filepath.Join(pqDir, "testdata", "postgres", "pg_hba.conf"))
	if err != nil {
		return err
	}
	if err := writeOwned(filepath.Join(s.DataDir(), "pg_hba.conf"), hba); err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	config, err := os.ReadFile(filepath.Join(pqDir, "testdata", "postgres",
		"docker-entrypoint-initdb.d", "20-config.sql"))
	if err != nil {
		return err
	}
	// The compose file's POSTGRES_USER/POSTGRES_DATABASE: a superuser pqgo
	// owning a database pqgo.
	script := "CREATE ROLE pqgo SUPERUSER LOGIN;\nCREATE DATABASE pqgo OWNER pqgo;\n"
	for _, db := range dbs {
		script += fmt.Sprintf("CREATE DATABASE %q OWNER pqgo;\n", db)
	}
	script += strings.ReplaceAll(string(config), "/ssl2/", sslDir+"/")
	script += "SELECT pg_reload_conf();\n"
	if err := s.Exec(script); err != nil {
		return err
	}
	// The reload is asynchronous: wait (bounded) until SSL is on.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, err := s.Query("SHOW ssl")
		if err == nil && out == "on" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ssl still %q after reload (%v)", out, err)
		}
	}
}

// copyCerts copies lib/pq's keys and certificates to dir, readable only by
// the server's account, as lib/pq's testdata/postgres/entry.sh does.
func copyCerts(from, dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := chownServer(dir); err != nil {
		return err
	}
	for _, pattern := range []string{"*.key", "*.crt"} {
		files, err := filepath.Glob(filepath.Join(from, pattern))
		if err != nil {
			return err
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			if err := writeOwned(filepath.Join(dir, filepath.Base(f)), b); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeOwned writes a file with mode 0600 owned by the server's account.
func writeOwned(path string, b []byte) error {
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return err
	}
	return chownServer(path)
}

// chownServer hands path to the postgres OS user when we are root (pgtest
// then runs the server as that user); otherwise the server runs as us.
func chownServer(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}
