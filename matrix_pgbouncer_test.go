package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestMatrixPgBouncer: Debian's PgBouncer in front of the shared server, in
// session and in transaction pooling mode (pgx with the simple protocol
// there, as PgBouncer needs), the same query set raw and through pgfast.
func TestMatrixPgBouncer(t *testing.T) {
	t.Parallel()
	s := server(t)
	bouncer, err := pgtest.StartPgBouncer(s)
	if errors.Is(err, pgtest.ErrNoPgBouncer) {
		requireOrSkip(t, "pgbouncer is not installed (apt-get install pgbouncer)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bouncer.Stop)
	dsn := func(db string, pgxExtra string) func(backendCase) string {
		return func(b backendCase) string {
			d := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=5",
				bouncer.Port(), pgtest.TrustUser, db)
			if b.backend == PGX && pgxExtra != "" {
				d += " " + pgxExtra
			}
			return d
		}
	}
	simple := "default_query_exec_mode=simple_protocol"
	runMatrix(t, true, []matrixCell{
		{name: "session", dsn: dsn(pgtest.BouncerSessionDB, ""), want: "ok", check: bouncerSessionChecks},
		{name: "session/simple-protocol", dsn: dsn(pgtest.BouncerSessionDB, simple), want: "ok", check: bouncerSessionChecks},
		{name: "transaction/simple-protocol", dsn: dsn(pgtest.BouncerTransactionDB, simple), want: "ok", check: bouncerQueries},
		{name: "unknown-database", dsn: dsn("nosuchdb", simple), want: "sqlstate 08P01"},
	})
	if t.Failed() {
		t.Logf("pgbouncer log:\n%s", bouncer.Log())
	}
}

// bouncerQueries is the query set every pooling mode must serve: a bound
// parameter, many rows, a transaction's own setting, an error and the query
// after it.
func bouncerQueries(ctx context.Context, db *sql.DB) error {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT $1::int + 1", 41).Scan(&n); err != nil || n != 42 {
		return fmt.Errorf("bound parameter: %d, %w", n, err)
	}
	if err := db.QueryRowContext(ctx, "SELECT sum(g)::int FROM generate_series(1, 1000) g").Scan(&n); err != nil || n != 500500 {
		return fmt.Errorf("many rows: %d, %w", n, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	var v string
	if _, err := tx.ExecContext(ctx, "SELECT set_config('matrix.x', '7', true)"); err != nil {
		tx.Rollback()
		return fmt.Errorf("set_config: %w", err)
	}
	if err := tx.QueryRowContext(ctx, "SELECT current_setting('matrix.x')").Scan(&v); err != nil || v != "7" {
		tx.Rollback()
		return fmt.Errorf("transaction setting: %q, %w", v, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if _, err := db.ExecContext(ctx, "SELECT 1/0"); errClass(err) != "sqlstate 22012" {
		return fmt.Errorf("division by zero gave %v", err)
	}
	if err := db.QueryRowContext(ctx, "SELECT 3").Scan(&n); err != nil || n != 3 {
		return fmt.Errorf("after an error: %d, %w", n, err)
	}
	return nil
}

// bouncerSessionChecks adds what only session pooling keeps: a prepared
// statement used twice and a session setting on one connection.
func bouncerSessionChecks(ctx context.Context, db *sql.DB) error {
	if err := bouncerQueries(ctx, db); err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stmt, err := conn.PrepareContext(ctx, "SELECT $1::text || '!'")
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer stmt.Close()
	for _, in := range []string{"a", "b"} {
		var out string
		if err := stmt.QueryRowContext(ctx, in).Scan(&out); err != nil || out != in+"!" {
			return fmt.Errorf("prepared statement: %q, %w", out, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "SET matrix.s = 'kept'"); err != nil {
		return fmt.Errorf("set: %w", err)
	}
	var v string
	if err := conn.QueryRowContext(ctx, "SELECT current_setting('matrix.s')").Scan(&v); err != nil || v != "kept" {
		return fmt.Errorf("session setting: %q, %w", v, err)
	}
	return nil
}
