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

// pgx names each attempt in its connect error by the address its LookupFunc
// returned ("localhost:5432 (localhost): server error: ..."). pgfast's
// lookup returns the host itself, so that its dialer can race the host's
// addresses, and pgx would name the host twice. pgxNamingConnector puts
// back the address pgfast actually dialled, as raw pgx names it
// ("127.0.0.1:5432 (localhost): ...").
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

// Connect connects through pgx and, on failure, names the addresses dialled.
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

// recordingPgxDial is pgfast's dial function for pgx: it also tells the
// Connect call which address each host's attempt dialled.
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

// pgxConnectError is pgx's *pgconn.ConnectError with each attempt named by
// the address dialled. It is only a text around it: errors.Unwrap (and
// NotReadyError's Unwrap) give the *pgconn.ConnectError itself.
type pgxConnectError struct {
	err  *pgconn.ConnectError
	text string
}

func (e *pgxConnectError) Error() string { return e.text }

// Unwrap returns pgx's error.
func (e *pgxConnectError) Unwrap() error { return e.err }
