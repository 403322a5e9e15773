package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestHostaddrPerRepeatedHost: host=h,h hostaddr=a,b is valid libpq (one
// certificate name, two addresses). Both backends accept it, keep both
// addresses, and connect to the second when the first refuses; both are
// dialled.
func TestHostaddrPerRepeatedHost(t *testing.T) {
	s := server(t)
	refused := "127.0.0.2" // the test server listens on 127.0.0.1 only
	if s.Host() != "127.0.0.1" {
		t.Skipf("test server on %s, want 127.0.0.1", s.Host())
	}
	dsn := fmt.Sprintf("host=db.example,db.example hostaddr=%s,%s port=%d user=%s dbname=%s sslmode=disable connect_timeout=5",
		refused, s.Host(), s.Port(), pgtest.TrustUser, pgtest.Database)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		c, err := NewConnector(dsn, WithBackend(b.backend))
		if err != nil {
			t.Fatalf("NewConnector: %v", err)
		}
		db := sql.OpenDB(c)
		defer db.Close()
		hosts := c.Config().Hosts
		if len(hosts) != 2 || hosts[0].Addr != refused || hosts[1].Addr != s.Host() || hosts[0].Host != "db.example" || hosts[1].Host != "db.example" {
			t.Fatalf("hosts %+v, want db.example twice with %s and %s", hosts, refused, s.Host())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var addr string
		if err := db.QueryRowContext(ctx, "SELECT host(inet_server_addr())").Scan(&addr); err != nil {
			t.Fatalf("query: %v", err)
		}
		if addr != s.Host() {
			t.Errorf("connected to %s, want %s", addr, s.Host())
		}
		dialled := map[string]bool{}
		for _, a := range c.Stats().Addrs {
			dialled[a.Addr] = true
		}
		for _, ip := range []string{refused, s.Host()} {
			if a := fmt.Sprintf("%s:%d", ip, s.Port()); !dialled[a] {
				t.Errorf("%s never dialled; address book %+v", a, c.Stats().Addrs)
			}
		}
	})
}
