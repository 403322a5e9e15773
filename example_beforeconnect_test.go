package pgfast_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast"
)

// fetchToken stands for a cloud SDK's token call (an RDS IAM auth token, an
// Entra ID access token, a Vault dynamic secret).
func fetchToken(ctx context.Context, host, user string) (string, error) {
	return "token-for-" + user + "@" + host, ctx.Err()
}

// A pool whose password comes from a token function, pgxpool's way: the DSN
// has no password and BeforeConnect sets it for each new connection.
// pgfast's own connections for the pool (its probes) run the same hook, so
// Ready, State and the fail-fast gate see what the pool's connections see.
// The hook gets at most connect_timeout; its error fails that attempt only.
func ExampleNewPoolWithConfig_beforeConnect() {
	cfg, err := pgxpool.ParseConfig("postgres://app_iam@db.example.internal:5432/app?sslmode=verify-full&connect_timeout=5")
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg.MaxConnLifetime = 10 * time.Minute // shorter than the token's life
	cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		token, err := fetchToken(ctx, cc.Host, cc.User)
		if err != nil {
			return err
		}
		cc.Password = token
		return nil
	}
	pool, err := pgfast.NewPoolWithConfig(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	_ = pgfast.PoolConnector(pool).State()
}
