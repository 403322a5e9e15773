package pgtest

import (
	"errors"
	"testing"
)

// StartT creates and starts a server for a test and registers its Cleanup
// with t. It fails the test, including the server log, if the server cannot
// be started, and skips the test if no PostgreSQL binaries are installed.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if errors.Is(err, ErrNoPostgres) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("pgtest.New: %v", err)
	}
	t.Cleanup(s.Cleanup)
	if err := s.Start(); err != nil {
		t.Fatalf("pgtest: Start: %v", err)
	}
	return s
}
