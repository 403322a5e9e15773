package compat_test

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

const migrationsDir = "testdata/migrations"

// tableExists reports whether the public schema has table name.
func tableExists(t *testing.T, ctx context.Context, db *sql.DB, name string) bool {
	t.Helper()
	var ok bool
	err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_tables WHERE schemaname = 'public' AND tablename = $1)`, name).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestGooseProvider(t *testing.T) {
	forEachBackend(t, func(t *testing.T, driverName string) {
		ctx := testCtx(t)
		db, _ := openDB(t, driverName)
		// The session locker holds an advisory lock on one pinned connection
		// for the whole run.
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			t.Fatal(err)
		}
		p, err := goose.NewProvider(goose.DialectPostgres, db, os.DirFS(migrationsDir), goose.WithSessionLocker(locker))
		if err != nil {
			t.Fatal(err)
		}

		results, err := p.Up(ctx)
		if err != nil {
			t.Fatalf("Up: %v", err)
		}
		if len(results) != 3 {
			t.Fatalf("Up applied %d migrations, want 3", len(results))
		}
		if v, err := p.GetDBVersion(ctx); err != nil || v != 3 {
			t.Fatalf("version after Up: %d, %v", v, err)
		}

		// The migrated schema works: the trigger from the StatementBegin block fires.
		var authorID int64
		if err := db.QueryRowContext(ctx, `INSERT INTO authors (name) VALUES ($1) RETURNING id`, "Le Guin").Scan(&authorID); err != nil {
			t.Fatal(err)
		}
		var updated time.Time
		if err := db.QueryRowContext(ctx, `INSERT INTO books (author_id, title) VALUES ($1, $2) RETURNING updated`,
			authorID, "The Dispossessed").Scan(&updated); err != nil {
			t.Fatal(err)
		}
		if time.Since(updated) > time.Hour {
			t.Errorf("trigger did not set updated: %v", updated)
		}

		// Down one step at a time, then all the way.
		if _, err := p.Down(ctx); err != nil {
			t.Fatalf("Down: %v", err)
		}
		if v, _ := p.GetDBVersion(ctx); v != 2 {
			t.Errorf("version after Down: %d, want 2", v)
		}
		if _, err := p.DownTo(ctx, 0); err != nil {
			t.Fatalf("DownTo(0): %v", err)
		}
		if v, _ := p.GetDBVersion(ctx); v != 0 {
			t.Errorf("version after DownTo(0): %d, want 0", v)
		}
		for _, table := range []string{"authors", "books"} {
			if tableExists(t, ctx, db, table) {
				t.Errorf("table %s still there after DownTo(0)", table)
			}
		}
		status, err := p.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range status {
			if s.State != goose.StatePending {
				t.Errorf("migration %d: state %s, want pending", s.Source.Version, s.State)
			}
		}

		// And up again.
		if _, err := p.Up(ctx); err != nil {
			t.Fatalf("Up again: %v", err)
		}
		if !tableExists(t, ctx, db, "books") {
			t.Error("books missing after Up again")
		}
	})
}

// The classic package-level API (goose.Up / goose.Down with a directory).
// It keeps global state, so this test must not run in parallel.
func TestGooseClassic(t *testing.T) {
	forEachBackend(t, func(t *testing.T, driverName string) {
		ctx := testCtx(t)
		db, _ := openDB(t, driverName)
		goose.SetBaseFS(nil)
		goose.SetLogger(goose.NopLogger())
		if err := goose.SetDialect("postgres"); err != nil {
			t.Fatal(err)
		}
		if err := goose.UpContext(ctx, db, migrationsDir); err != nil {
			t.Fatalf("Up: %v", err)
		}
		if v, err := goose.GetDBVersionContext(ctx, db); err != nil || v != 3 {
			t.Fatalf("version after Up: %d, %v", v, err)
		}
		if err := goose.DownContext(ctx, db, migrationsDir); err != nil {
			t.Fatalf("Down: %v", err)
		}
		if err := goose.DownToContext(ctx, db, migrationsDir, 0); err != nil {
			t.Fatalf("DownTo(0): %v", err)
		}
		if v, err := goose.GetDBVersionContext(ctx, db); err != nil || v != 0 {
			t.Fatalf("version after DownTo(0): %d, %v", v, err)
		}
		if tableExists(t, ctx, db, "authors") {
			t.Error("authors still there after DownTo(0)")
		}
	})
}
