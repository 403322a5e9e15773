// Package pgtest starts throwaway PostgreSQL servers for tests.
//
// Every server lives in its own temporary directory, which holds the data
// directory, the server log and the Unix socket. Servers are tuned for speed
// rather than durability (fsync=off and friends) and are configured so that
// streaming-replication standbys can be cloned from them.
//
// When the test binary runs as root, every PostgreSQL program (initdb, pg_ctl,
// postgres, pg_basebackup, psql) runs as the "postgres" OS user, optionally
// inside a network namespace (see Options.NetNS). Otherwise everything runs
// as the current user.
//
// A typical test:
//
//	srv := pgtest.StartT(t, pgtest.Options{})
//	db, err := sql.Open("pgfast", srv.DSN(pgtest.TrustUser))
//
// The package relies on Linux facilities (/proc, setpriv, ip-netns).
package pgtest
