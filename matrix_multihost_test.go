package pgfast

import (
	"fmt"
	"testing"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestMatrixMultiHost: multi-host URL and key=value forms with one host down
// (nothing listening) and the other up, in both orders, raw vs pgfast.
func TestMatrixMultiHost(t *testing.T) {
	t.Parallel()
	s := server(t)
	up, down, down2 := s.Port(), freeLoopbackPort(t), freeLoopbackPort(t)
	user, db := pgtest.TrustUser, pgtest.Database
	kv := func(p1, p2 int, extra string) func(backendCase) string {
		return fixedDSN(fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%d,%d user=%s dbname=%s sslmode=disable connect_timeout=5 %s",
			p1, p2, user, db, extra))
	}
	u := func(p1, p2 int, extra string) func(backendCase) string {
		return fixedDSN(fmt.Sprintf("postgres://%s@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&connect_timeout=5%s",
			user, p1, p2, db, extra))
	}
	runMatrix(t, true, []matrixCell{
		{name: "kv/down-up", dsn: kv(down, up, ""), want: "ok"},
		{name: "kv/up-down", dsn: kv(up, down, ""), want: "ok"},
		{name: "kv/down-up/read-write", dsn: kv(down, up, "target_session_attrs=read-write"), want: "ok"},
		// lib/pq's URL parser has no per-host ports (it reads
		// "127.0.0.1:P1,127.0.0.1:P2" as one host name): the same failure
		// raw and through pgfast-pq.
		{name: "url/down-up", dsn: u(down, up, ""), want: "ok", wantPQ: "dns"},
		{name: "url/up-down", dsn: u(up, down, ""), want: "ok", wantPQ: "dns"},
		{name: "url/down-up/any", dsn: u(down, up, "&target_session_attrs=any"), want: "ok", wantPQ: "dns"},
		// One port for every host (127.0.0.2: nothing listens there).
		{name: "url/shared-port", want: "ok", dsn: fixedDSN(fmt.Sprintf(
			"postgres://%s@127.0.0.2,127.0.0.1:%d/%s?sslmode=disable&connect_timeout=5", user, up, db))},
		{name: "url/query-hosts", want: "ok", dsn: fixedDSN(fmt.Sprintf(
			"postgres://%s@/%s?host=127.0.0.1,127.0.0.1&port=%d,%d&sslmode=disable&connect_timeout=5", user, db, down, up))},
		{name: "kv/both-down", dsn: kv(down, down2, ""), want: "net dial"},
		{name: "url/both-down", dsn: u(down, down2, ""), want: "net dial", wantPQ: "dns"},
	})
}
