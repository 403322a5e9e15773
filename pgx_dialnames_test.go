package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// loopbackResolver resolves every name to 127.0.0.1.
type loopbackResolver struct{}

func (loopbackResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

// TestPgxConnectErrorNamesDialledAddress: a pgx connect error through pgfast
// names the address dialled for a host name, as raw pgx does
// ("127.0.0.1:PORT (name): ..."), not the name twice; errors.Unwrap of the
// NotReadyError is pgx's *pgconn.ConnectError, and errors.As reaches the
// server's *pgconn.PgError.
func TestPgxConnectErrorNamesDialledAddress(t *testing.T) {
	srv := server(t)
	free := freeLoopbackPort(t)
	const name = "db.pgfast-test.invalid"
	for _, tc := range []struct {
		port int
		want string
	}{
		{srv.Port(), fmt.Sprintf("127.0.0.1:%d (%s): server error: FATAL: database", srv.Port(), name)},
		{free, fmt.Sprintf("127.0.0.1:%d (%s): dial error: dial tcp 127.0.0.1:%d: connect: connection refused", free, name, free)},
	} {
		dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=pgfast_no_such_db sslmode=disable connect_timeout=5", name, tc.port)
		c, err := NewConnector(dsn, WithResolver(loopbackResolver{}))
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(c)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = db.PingContext(ctx)
		cancel()
		db.Close()
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %q does not contain %q", err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), fmt.Sprintf("%s:%d (%s)", name, tc.port, name)) {
			t.Errorf("error %q names the host instead of the address", err)
		}
		if _, ok := errors.Unwrap(err).(*pgconn.ConnectError); !ok {
			t.Errorf("errors.Unwrap gives %T, want *pgconn.ConnectError", errors.Unwrap(err))
		}
		var pgErr *pgconn.PgError
		if tc.port == srv.Port() && (!errors.As(err, &pgErr) || pgErr.Code != "3D000") {
			t.Errorf("errors.As *pgconn.PgError: %v", pgErr)
		}
	}
}
