package pgfast

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/pgfast/pgfast/internal/netfault"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// sharedServer is one throwaway PostgreSQL for the tests that need a running
// server and do not stop it. Tests that stop or fault a server make their own.
// It starts on first use (server(t)), so a run of unit tests alone starts no
// PostgreSQL; TestMain cleans it up after the run.
var (
	sharedOnce   sync.Once
	sharedMu     sync.Mutex // guards sharedServer for the cleanup in runTests
	sharedServer *pgtest.Server
	sharedErr    error
)

// envRequireDB makes a missing PostgreSQL a failure instead of a skip
// (set by the README's test command).
const envRequireDB = "PGFAST_REQUIRE_DB"

func TestMain(m *testing.M) {
	code := runTests(m)
	os.Exit(code)
}

func runTests(m *testing.M) int {
	defer func() {
		sharedMu.Lock()
		defer sharedMu.Unlock()
		if sharedServer != nil {
			sharedServer.Cleanup()
		}
	}()
	return m.Run()
}

// startShared starts the shared server once, on first use.
func startShared() {
	// Inside a fault namespace only the fault suite runs; it starts its own servers.
	if netfault.Inside() {
		sharedErr = errors.New("inside a fault namespace: no shared server")
		return
	}
	s, err := pgtest.New(pgtest.Options{})
	if err == nil {
		err = s.Start()
	}
	sharedMu.Lock()
	sharedServer, sharedErr = s, err
	sharedMu.Unlock()
}

// server returns the shared running server, starting it on first use, or
// skips (fails under PGFAST_REQUIRE_DB=1) when there is none.
func server(t testing.TB) *pgtest.Server {
	t.Helper()
	sharedOnce.Do(startShared)
	if sharedErr != nil || sharedServer == nil {
		requireOrSkip(t, fmt.Sprintf("no PostgreSQL for tests: %v", sharedErr))
	}
	return sharedServer
}

// newServer creates a server of the test's own, not started.
func newServer(t testing.TB, opts pgtest.Options) *pgtest.Server {
	t.Helper()
	s, err := pgtest.New(opts)
	if errors.Is(err, pgtest.ErrNoPostgres) {
		requireOrSkip(t, err.Error())
	}
	if err != nil {
		t.Fatalf("pgtest.New: %v", err)
	}
	t.Cleanup(s.Cleanup)
	return s
}

func requireOrSkip(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(envRequireDB) == "1" {
		t.Fatalf("%s (and %s=1)", why, envRequireDB)
	}
	t.Skip(why)
}

// backendCase is one row of the backend table every behaviour test runs over.
type backendCase struct {
	name    string // pgfast's driver name
	raw     string // the raw driver's name
	backend Backend
}

var backends = []backendCase{
	{name: "pgfast", raw: "pgx", backend: PGX},
	{name: "pgfast-pq", raw: "postgres", backend: LibPQ},
}

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, b backendCase)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 where nothing listens.
func freeLoopbackPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// withKV appends key=value settings to a key=value DSN.
func withKV(dsn string, kv ...string) string {
	return dsn + " " + strings.Join(kv, " ")
}
