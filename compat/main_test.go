package compat_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/compat/internal/testdb"
)

// server is the throwaway PostgreSQL every test uses; each test gets a
// database of its own on it.
var (
	server    *testdb.Server
	serverErr error
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	server, serverErr = testdb.Start()
	if server != nil {
		defer server.Stop()
	}
	defer closeAdmin()
	return m.Run()
}

// backends are pgfast's two driver names.
var backends = []string{"pgfast", "pgfast-pq"}

// forEachBackend runs f as a subtest per pgfast driver name.
func forEachBackend(t *testing.T, f func(t *testing.T, driverName string)) {
	for _, name := range backends {
		t.Run(name, func(t *testing.T) { f(t, name) })
	}
}

// requireServer skips the test when PostgreSQL is not installed, or fails
// it under PGFAST_REQUIRE_DB=1 (as the project's test scripts set for root).
func requireServer(t *testing.T) {
	t.Helper()
	if serverErr == nil {
		return
	}
	if errors.Is(serverErr, testdb.ErrNoPostgres) && os.Getenv("PGFAST_REQUIRE_DB") != "1" {
		t.Skip(serverErr)
	}
	t.Fatalf("no PostgreSQL: %v", serverErr)
}

var (
	adminOnce sync.Once
	admin     *sql.DB
	adminErr  error
	dbSeq     atomic.Int64
)

func closeAdmin() {
	if admin != nil {
		admin.Close()
	}
}

// freshDSN creates an empty database for the test and returns its DSN.
func freshDSN(t *testing.T) string {
	t.Helper()
	requireServer(t)
	adminOnce.Do(func() { admin, adminErr = sql.Open("pgfast", server.DSN("postgres")) })
	if adminErr != nil {
		t.Fatal(adminErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := fmt.Sprintf("compat_%d", dbSeq.Add(1))
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("CREATE DATABASE %s: %v", name, err)
	}
	return server.DSN(name)
}

// openDB opens a fresh database through pgfast's driverName and waits until
// it is ready. The database is closed when the test ends.
func openDB(t *testing.T, driverName string) (*sql.DB, string) {
	t.Helper()
	dsn := freshDSN(t)
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	waitReady(t, db)
	return db, dsn
}

// waitReady waits, bounded, until db has a verified connection.
func waitReady(t *testing.T, db *sql.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pgfast.Ready(ctx, db); err != nil {
		t.Fatal(err)
	}
}

// testCtx is a context bounding one test's queries.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
