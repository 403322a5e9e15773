package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestConnectErrorTextHasNoPassword: a connection refused on a free
// loopback port, through every front end (database/sql on both backends,
// the connector's Ready, NewPool): no Error() in the error's chain holds the
// password, and the backend's own error stays reachable with errors.As.
// pgx's *pgconn.ConnectError keeps the whole configuration, password
// included, in its Config field: that is pgx's own behaviour, the same with
// raw pgx, which this test records.
func TestConnectErrorTextHasNoPassword(t *testing.T) {
	const secret = "C0nnectS3cret"
	port := strconv.Itoa(freeLoopbackPort(t))
	dsns := map[string]string{
		"key=value": "host=127.0.0.1 port=" + port + " user=u dbname=d password=" + secret + " connect_timeout=2",
		"URL":       "postgres://u:" + secret + "@127.0.0.1:" + port + "/d?connect_timeout=2",
	}
	noSecretText := func(t *testing.T, what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error from a refused port", what)
			return
		}
		for _, e := range chainErrors(err) {
			if strings.Contains(e.Error(), secret) {
				t.Errorf("%s: %T's message holds the password: %q", what, e, e.Error())
			}
		}
	}
	for form, dsn := range dsns {
		t.Run(form, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()

			// Raw pgx: its ConnectError holds the password in Config.
			_, rawErr := pgx.Connect(ctx, dsn)
			noSecretText(t, "raw pgx", rawErr)
			var rawCE *pgconn.ConnectError
			if errors.As(rawErr, &rawCE) && rawCE.Config != nil && rawCE.Config.Password != secret {
				t.Logf("raw pgx's ConnectError.Config no longer holds the password (pgx changed): update the docs")
			}

			for _, b := range backends {
				c, err := NewConnector(dsn, WithBackend(b.backend))
				if err != nil {
					t.Fatalf("%s: %v", b.name, err)
				}
				rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
				rerr := c.Ready(rctx)
				rcancel()
				noSecretText(t, b.name+" Ready", rerr)
				db := sql.OpenDB(c)
				perr := db.PingContext(ctx)
				noSecretText(t, b.name+" Ping", perr)
				db.Close()
				if b.backend == PGX {
					var ce *pgconn.ConnectError
					if !errors.As(rerr, &ce) {
						t.Errorf("pgx Ready: %v: no *pgconn.ConnectError reachable", rerr)
					}
				} else {
					var oe *net.OpError
					if !errors.As(rerr, &oe) {
						t.Errorf("lib/pq Ready: %v: no *net.OpError reachable", rerr)
					}
				}
			}

			pool, err := NewPool(ctx, dsn)
			if err != nil {
				t.Fatalf("NewPool: %v", err)
			}
			defer pool.Close()
			pc := PoolConnector(pool)
			rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			_ = pc.Ready(rctx)
			rcancel()
			perr := pool.Ping(ctx)
			noSecretText(t, "NewPool Ping", perr)
		})
	}
}
