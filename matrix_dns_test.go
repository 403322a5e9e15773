package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestMatrixUnresolvableHostErrorTypes: a host name that does not resolve
// fails the same way raw and through pgfast, and the raw driver's error
// types stay reachable with errors.As (*net.DNSError, and *net.OpError where
// the raw driver has one).
func TestMatrixUnresolvableHostErrorTypes(t *testing.T) {
	t.Parallel()
	port := freeLoopbackPort(t)
	// "a..b" is not a domain name: Go's resolver fails it without sending
	// a query anywhere.
	dsn := fmt.Sprintf("host=a..b port=%d user=x dbname=y sslmode=disable connect_timeout=5", port)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		t.Parallel()
		errOf := func(driverName string) error {
			db, err := sql.Open(driverName, dsn)
			if err != nil {
				return err
			}
			defer db.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return db.PingContext(ctx)
		}
		raw, fast := errOf(b.raw), errOf(b.name)
		var rawDNS, fastDNS *net.DNSError
		var rawOp, fastOp *net.OpError
		t.Logf("raw %s: %v (DNSError %v, OpError %v)", b.raw, raw, errors.As(raw, &rawDNS), errors.As(raw, &rawOp))
		t.Logf("%s: %v (DNSError %v, OpError %v)", b.name, fast, errors.As(fast, &fastDNS), errors.As(fast, &fastOp))
		if errors.As(raw, &rawDNS) && !errors.As(fast, &fastDNS) {
			t.Errorf("%s: *net.DNSError not reachable: %v", b.name, fast)
		}
		if errors.As(raw, &rawOp) && !errors.As(fast, &fastOp) {
			t.Errorf("%s: *net.OpError not reachable (raw %s has Op %q): %v", b.name, b.raw, rawOp.Op, fast)
		}
	})
}
