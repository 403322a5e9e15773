package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"
)

// serverCode returns the SQLSTATE of the backend's own error type in err,
// found with errors.As ("" when there is none).
func serverCode(b Backend, err error) string {
	var pgErr *pgconn.PgError
	var pqErr *pq.Error
	switch {
	case b == PGX && errors.As(err, &pgErr):
		return pgErr.Code
	case b == LibPQ && errors.As(err, &pqErr):
		return string(pqErr.Code)
	}
	return ""
}

// TestErrorIdentityMatchesRaw: for a server error, a statement whose
// deadline passes and a transaction begun with a cancelled context, every
// identity the raw driver's error has (errors.Is context.Canceled,
// context.DeadlineExceeded, driver.ErrBadConn; errors.As the backend's own
// error type with its SQLSTATE), pgfast's error has too.
func TestErrorIdentityMatchesRaw(t *testing.T) {
	srv := server(t)
	dsn := withKV(srv.DSN("postgres"), "connect_timeout=5")
	forEachBackend(t, func(t *testing.T, b backendCase) {
		type identity struct {
			canceled, deadline, badConn bool
			code                        string
		}
		identify := func(err error) identity {
			return identity{errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
				errors.Is(err, driver.ErrBadConn), serverCode(b.backend, err)}
		}
		cases := []struct {
			name string
			run  func(db *sql.DB) error
		}{
			{"server error", func(db *sql.DB) error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var n int
				return db.QueryRowContext(ctx, "select 1/0").Scan(&n)
			}},
			{"deadline during a statement", func(db *sql.DB) error {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				_, err := db.ExecContext(ctx, "select pg_sleep(5)")
				return err
			}},
			{"cancelled before begin", func(db *sql.DB) error {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				_, err := db.BeginTx(ctx, nil)
				return err
			}},
		}
		for _, tc := range cases {
			got := map[string]identity{}
			for _, name := range []string{b.raw, b.name} {
				db, err := sql.Open(name, dsn)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := db.PingContext(ctx); err != nil {
					t.Fatalf("%s: Ping: %v", name, err)
				}
				cancel()
				err = tc.run(db)
				db.Close()
				if err == nil {
					t.Fatalf("%s: %s: no error", name, tc.name)
				}
				got[name] = identify(err)
				t.Logf("%s: %s: %+v: %v", name, tc.name, got[name], err)
			}
			raw, fast := got[b.raw], got[b.name]
			if raw.canceled && !fast.canceled || raw.deadline && !fast.deadline || raw.badConn && !fast.badConn ||
				raw.code != "" && raw.code != fast.code {
				t.Errorf("%s: raw %+v, pgfast %+v: pgfast's error lost an identity", tc.name, raw, fast)
			}
		}
	})
}
