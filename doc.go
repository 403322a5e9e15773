// Package pgfast is a database/sql driver for PostgreSQL that never blocks a
// process on a database it cannot reach and never leaves it hanging on a
// connection that has silently died.
//
// It wraps pgx/v5's stdlib driver (driver name "pgfast") or lib/pq
// ("pgfast-pq"): swap the driver name in sql.Open and nothing else. sql.Open
// returns at once while a connection is made in the background; Ready waits
// for it within a context:
//
//	db, err := sql.Open("pgfast", "postgres://app@db.internal/app")
//	if err != nil { ... }                       // a bad DSN is a *ConfigError
//	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
//	defer cancel()
//	if err := pgfast.Ready(ctx, db); err != nil { ... } // says what each address answered
//
// Every connection is dialled by pgfast: DNS is resolved afresh each time, all
// addresses are raced (Happy Eyeballs), each under connect_timeout, and
// TCP_USER_TIMEOUT and keepalives are set on the socket (libpq's keepalives*,
// tcp_user_timeout keys, with finite defaults). While the database is down a
// query fails at once with ErrNotReady instead of waiting out a dead host's
// timeouts; see the README for every parameter and decision.
//
// # Drop-in
//
// Code written for the raw driver keeps working:
//
//   - Queries, transactions, prepared statements, Ping and named values
//     behave exactly as the backend's.
//   - Errors are the backend's own, wrapped with %w where pgfast adds
//     context: errors.As with pgx's *pgconn.PgError (on "pgfast") or lib/pq's
//     *pq.Error (on "pgfast-pq") finds them.
//   - On "pgfast", sql.Conn.Raw hands out pgx's own *stdlib.Conn, so native
//     pgx code (CopyFrom, LISTEN/NOTIFY) works unchanged.
//   - On "pgfast-pq", sql.Conn.Raw hands out a *PQConn; its Unwrap method
//     returns lib/pq's own connection (for pq.SetNoticeHandler, say), and
//     pq.CopyIn works unchanged through Prepare.
//
// # Readiness
//
// A connector is StateConnecting until the first answer, then StateReady or
// StateDown, and StateClosed after Close. Connector.State and
// Connector.Stats read it without I/O; ReadyHandler serves it over HTTP for
// a readiness (or startup) probe. Never point a liveness probe at a
// database's readiness: restarting the process does not bring the database
// back, and pgfast reconnects by itself.
package pgfast
