package pgfast

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestMatrixUnixSocket: Unix-domain sockets named by host=/dir, by a URL's
// ?host=/dir and percent-encoded host, with trust and scram, raw vs pgfast.
func TestMatrixUnixSocket(t *testing.T) {
	t.Parallel()
	s := server(t)
	dir, port := s.SocketDir(), s.Port()
	kv := func(user string) string {
		dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", dir, port, user, pgtest.Database)
		if user == pgtest.ScramUser {
			dsn += " password=" + pgtest.ScramPassword
		}
		return dsn
	}
	runMatrix(t, true, []matrixCell{
		{name: "kv-host-dir", dsn: fixedDSN(kv(pgtest.TrustUser)), want: "ok"},
		{name: "kv-host-dir/scram", dsn: fixedDSN(kv(pgtest.ScramUser)), want: "ok"},
		{name: "url-query-host", want: "ok", dsn: fixedDSN(fmt.Sprintf("postgres://%s@/%s?host=%s&port=%d&sslmode=disable",
			pgtest.TrustUser, pgtest.Database, url.QueryEscape(dir), port))},
		// lib/pq's URL parser (net/url) rejects "%2F" in the host: the same
		// failure raw and through pgfast-pq.
		{name: "url-encoded-host", want: "ok", wantPQ: "other", dsn: fixedDSN(fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable",
			pgtest.TrustUser, url.PathEscape(dir), port, pgtest.Database))},
		{name: "kv-host-dir/no-socket", want: "net dial", dsn: fixedDSN(fmt.Sprintf(
			"host=%s port=%d user=%s dbname=%s sslmode=disable connect_timeout=5", t.TempDir(), port, pgtest.TrustUser, pgtest.Database))},
	})
}

// TestMatrixUnixSocketPGHOST: PGHOST=/dir with no host in the DSN (not
// parallel: it sets the environment).
func TestMatrixUnixSocketPGHOST(t *testing.T) {
	s := server(t)
	t.Setenv("PGHOST", s.SocketDir())
	runMatrix(t, false, []matrixCell{
		{name: "PGHOST-dir", want: "ok", dsn: fixedDSN(fmt.Sprintf("port=%d user=%s dbname=%s sslmode=disable",
			s.Port(), pgtest.TrustUser, pgtest.Database))},
		{name: "PGHOST-dir/url", want: "ok", dsn: fixedDSN(fmt.Sprintf("postgres://%s@:%d/%s?sslmode=disable",
			pgtest.TrustUser, s.Port(), pgtest.Database))},
	})
}
