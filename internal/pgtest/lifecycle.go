package pgtest

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// pgctlTimeout is passed to pg_ctl -t: how long it waits for the server.
const pgctlTimeout = 30 * time.Second

// Start starts the server (pg_ctl start -w) and, the first time, creates
// the roles and the database. It fails if the server is already running.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cleanedUp {
		return errCleanedUp
	}
	return s.start()
}

// start does the work of Start; s.mu must be held.
func (s *Server) start() error {
	if err := s.removeStaleLockFiles(); err != nil {
		return err
	}
	if !s.provisioned {
		// As PostgreSQL's Docker image does: create the roles and the
		// database while only the Unix socket listens, so that no TCP
		// client ever sees a server without them (a missing role or
		// database is an error that waiting cannot fix).
		if err := s.pgctl("start", "-l", s.logFile, "-o", "-c listen_addresses=''"); err != nil {
			return err
		}
		if err := s.provision(); err != nil {
			return err
		}
		if err := s.pgctl("stop", "-m", "fast"); err != nil {
			return err
		}
	}
	if err := s.pgctl("start", "-l", s.logFile); err != nil {
		return err
	}
	return s.provision()
}

// provision creates the roles and the database unless already done.
func (s *Server) provision() error {
	if s.provisioned {
		return nil
	}
	if _, err := s.psql("postgres", provisionSQL); err != nil {
		return fmt.Errorf("pgtest: creating roles and database: %w\nserver log:\n%s", err, tail(s.Log()))
	}
	s.provisioned = true
	return nil
}

// Stop stops the server (pg_ctl stop -m fast -w). Stopping a server that is
// not running is not an error.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cleanedUp {
		return nil
	}
	if s.runningPID() == 0 {
		return nil
	}
	err := s.pgctl("stop", "-m", "fast")
	if err != nil && s.runningPID() == 0 {
		return nil // it went away on its own meanwhile
	}
	return err
}

// Restart restarts the server (pg_ctl restart -m fast -w), or starts it if
// it is not running.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cleanedUp {
		return errCleanedUp
	}
	if s.runningPID() == 0 {
		return s.start()
	}
	if err := s.pgctl("restart", "-m", "fast", "-l", s.logFile); err != nil {
		return err
	}
	return s.provision()
}

// Promote turns a standby into a primary (pg_ctl promote -w).
func (s *Server) Promote() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cleanedUp {
		return errCleanedUp
	}
	return s.pgctl("promote")
}

// Cleanup stops the server without waiting for clients (pg_ctl stop -m
// immediate, then SIGKILL if that did not work) and removes its temporary
// directory. It is safe to call more than once, on a nil Server, and after
// any failure.
func (s *Server) Cleanup() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cleanedUp {
		return
	}
	s.cleanedUp = true
	s.halt()
	if s.baseDir != "" {
		_ = os.RemoveAll(s.baseDir)
	}
}

// halt makes sure no process of the server is left running.
func (s *Server) halt() {
	if s.dataDir == "" || s.runningPID() == 0 {
		return
	}
	_, _ = s.run.run("", "pg_ctl", "stop", "-D", s.dataDir, "-m", "immediate", "-w", "-t", "10")
	if pid := s.runningPID(); pid != 0 {
		killServer(pid, 10*time.Second)
	}
}

// pgctl runs pg_ctl ACTION -D DATADIR -w -t 30 ARGS. Its errors include
// the tail of the server log.
func (s *Server) pgctl(action string, args ...string) error {
	argv := append([]string{action, "-D", s.dataDir, "-w", "-t", strconv.Itoa(int(pgctlTimeout.Seconds()))}, args...)
	if _, err := s.run.run("", "pg_ctl", argv...); err != nil {
		return fmt.Errorf("%w\nserver log:\n%s", err, tail(s.Log()))
	}
	return nil
}
