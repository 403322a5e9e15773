package pgfast_test

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgfast/pgfast"
)

// iamToken stands for a cloud SDK's token call: auth.BuildAuthToken (AWS RDS
// IAM), azidentity's GetToken (Entra ID), a Vault dynamic secret. Tokens
// live about 15 minutes; pgfast asks for one before every login.
func iamToken(ctx context.Context, host string, port uint16, user string) (string, error) {
	return fmt.Sprintf("iam-token-for-%s@%s:%d", user, host, port), ctx.Err()
}

// pgx's database/sql hooks through pgfast: what was
// stdlib.OpenDB(*cc, opts...) becomes NewConnectorFromConfig(cc,
// WithOpenDBOptions(opts...)). The password comes from the token function
// before every connection pgfast makes (its own background attempts
// included); AfterConnect prepares each session after its login.
func ExampleWithOpenDBOptions() {
	cc, err := pgx.ParseConfig("postgres://app_iam@db.example.internal:5432/app?sslmode=verify-full&connect_timeout=5")
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := pgfast.NewConnectorFromConfig(cc, pgfast.WithOpenDBOptions(
		stdlib.OptionBeforeConnect(func(ctx context.Context, cc *pgx.ConnConfig) error {
			token, err := iamToken(ctx, cc.Host, cc.Port, cc.User)
			if err != nil {
				return err // fails this attempt only; never shows the token
			}
			cc.Password = token
			return nil
		}),
		stdlib.OptionAfterConnect(func(ctx context.Context, conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, "SET statement_timeout = '30s'")
			return err
		}),
	))
	if err != nil {
		fmt.Println(err) // a *pgfast.ConfigError
		return
	}
	db := sql.OpenDB(c)
	defer db.Close()
	db.SetConnMaxLifetime(10 * time.Minute) // new logins, with new tokens, before the old expire
}

// lib/pq has no hook of its own: WithPQBeforeConnect runs before every
// connection of a pgfast-pq connector, on a copy of lib/pq's configuration.
func ExampleWithPQBeforeConnect() {
	c, err := pgfast.NewConnector("host=db.example.internal user=app_iam dbname=app sslmode=verify-full connect_timeout=5",
		pgfast.WithBackend(pgfast.LibPQ),
		pgfast.WithPQBeforeConnect(func(ctx context.Context, cfg *pq.Config) error {
			token, err := iamToken(ctx, cfg.Host, cfg.Port, cfg.User)
			if err != nil {
				return err
			}
			cfg.Password = token
			return nil
		}))
	if err != nil {
		fmt.Println(err)
		return
	}
	db := sql.OpenDB(c)
	defer db.Close()
	db.SetConnMaxLifetime(10 * time.Minute)
}
