package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
)

// pgxNamingConnector: pgx names each attempt in its connect error by what
// its LookupFunc returned; pgfast's returns the host itself (to race its
// addresses), so pgx would name the host twice. This puts back the address
// dialled, as raw pgx does ("127.0.0.1:5432 (localhost): ...").
type pgxNamingConnector struct {
	driver.Connector
}

// dialledKey carries a Connect call's *dialledAddrs to the dial function.
type dialledKey struct{}

// dialledAddrs maps each "host:port" pgx asked for to the address dialled
// for it; "" when different attempts used different addresses.
type dialledAddrs struct {
	mu sync.Mutex
	m  map[string]string
}

func (d *dialledAddrs) add(asked, got string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = make(map[string]string)
	}
	if prev, ok := d.m[asked]; ok && prev != got {
		got = ""
	}
	d.m[asked] = got
}

func (c pgxNamingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	d := &dialledAddrs{}
	dc, err := c.Connector.Connect(context.WithValue(ctx, dialledKey{}, d))
	if err == nil {
		return dc, nil
	}
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) || ce != err {
		return nil, err
	}
	text := err.Error()
	d.mu.Lock()
	asked := make([]string, 0, len(d.m))
	for a := range d.m {
		asked = append(asked, a)
	}
	sort.Slice(asked, func(i, j int) bool { return len(asked[i]) > len(asked[j]) })
	renamed := text
	for _, a := range asked {
		if got := d.m[a]; got != "" && got != a {
			renamed = strings.ReplaceAll(renamed, a+" (", got+" (")
		}
	}
	d.mu.Unlock()
	if renamed == text {
		return nil, err
	}
	return nil, &pgxConnectError{err: ce, text: renamed}
}

// recordingPgxDial is pgfast's dial for pgx, also telling the Connect call
// which address each host's attempt dialled.
func recordingPgxDial(dial dialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := dial(ctx, network, addr)
		d, ok := ctx.Value(dialledKey{}).(*dialledAddrs)
		switch {
		case !ok || network == "unix":
		case err == nil:
			if ra := nc.RemoteAddr(); ra != nil {
				d.add(addr, ra.String())
			}
		default:
			var de *DialError
			if errors.As(err, &de) && len(de.Attempts) == 1 {
				d.add(addr, de.Attempts[0].Addr)
			}
		}
		return nc, err
	}
}

// pgxConnectError is pgx's *pgconn.ConnectError with attempts named by the
// address dialled; only a text around it (Unwrap gives it).
type pgxConnectError struct {
	err  *pgconn.ConnectError
	text string
}

func (e *pgxConnectError) Error() string { return e.text }

func (e *pgxConnectError) Unwrap() error { return e.err }
