package pgfast

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// A tenant holds as many server backends as the raw driver: the connector's
// first connection is handed to the first query, and is not dialled again
// while database/sql keeps it (it was: at the loop's next wake, here the
// second connection's dial, one more backend per idle tenant).
func TestWarmConnectionTakenIsNotDialledAgain(t *testing.T) {
	srv := server(t)
	backends := func(app string) int {
		t.Helper()
		out, err := srv.Query("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" + app + "'")
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	forEachBackend(t, func(t *testing.T, b backendCase) {
		held := map[string]int{}
		for _, driver := range []string{b.raw, b.name} {
			app := "warmonce_" + strings.ReplaceAll(driver, "-", "_")
			db, err := sql.Open(driver, srv.DSN(pgtest.TrustUser)+" application_name="+app)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if driver == b.name {
				if err := Ready(ctx, db); err != nil {
					t.Fatal(err)
				}
			}
			c1, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c2, err := db.Conn(ctx) // dials: the connector hears of it
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			held[driver] = backends(app)
			_ = c1.Close()
			_ = c2.Close()
			cancel()
			_ = db.Close()
		}
		if held[b.name] > held[b.raw] {
			t.Errorf("two connections in use hold %d server backends through %s, %d through raw %s", held[b.name], b.name, held[b.raw], b.raw)
		}
	})
}
