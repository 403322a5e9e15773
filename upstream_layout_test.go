package pgfast

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
)

// pgfast reads a few unexported fields of pgx, pgxpool and lib/pq where they
// have no public API (listed in TestUpstreamLayout). An upgrade that moves
// one must fail here, loudly, naming the upstream module and what moved,
// not silently turn a feature off (each read falls back to "unknown" at run
// time). scripts/upgrade-check runs this (and the whole suite) against the
// newest upstream versions.

// upstreamVersion is the version of module path this module requires (its
// go.mod: test binaries carry no module versions; scripts/upgrade-check
// rewrites that go.mod in its scratch copy).
func upstreamVersion(path string) string {
	data, err := os.ReadFile("go.mod")
	if err != nil {
		return "(version unknown)"
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && f[0] == path {
			return f[1]
		}
	}
	return "(version unknown)"
}

// layoutChanged fails t with a message naming the upstream module and what
// pgfast relies on.
func layoutChanged(t *testing.T, module, what, consequence string) {
	t.Helper()
	t.Errorf("UPSTREAM LAYOUT CHANGED: %s %s: %s. pgfast reads it with reflect: %s. Update the reader (and this test) for the new layout.",
		module, upstreamVersion(module), what, consequence)
}

func TestUpstreamLayout(t *testing.T) {
	const pgxMod, pqMod, puddleMod = "github.com/jackc/pgx/v5", "github.com/lib/pq", "github.com/jackc/puddle/v2"
	t.Logf("tested against %s %s, %s %s, %s %s", pgxMod, upstreamVersion(pgxMod), puddleMod, upstreamVersion(puddleMod),
		pqMod, upstreamVersion(pqMod))

	t.Run("pgxpool.Pool.closeChan", func(t *testing.T) {
		f, ok := reflect.TypeFor[pgxpool.Pool]().FieldByName("closeChan")
		if !ok || f.Type != reflect.TypeFor[chan struct{}]() {
			layoutChanged(t, pgxMod, "pgxpool.Pool has no unexported field closeChan of type chan struct{}",
				"poolreg.go's poolClosed learns from it that Pool.Close ran; without it a NewPool connector stops only when the pool is garbage collected")
			return
		}
		cfg, err := pgxpool.ParseConfig("host=127.0.0.1 port=1")
		if err != nil {
			t.Fatal(err)
		}
		p, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		ch := poolClosed(p)
		p.Close()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			layoutChanged(t, pgxMod, "Pool.Close no longer closes closeChan", "poolreg.go's poolClosed waits on it")
		}
	})

	t.Run("pgx.ConnConfig.createdByParseConfig", func(t *testing.T) {
		var found bool
		for _, typ := range []reflect.Type{reflect.TypeFor[pgx.ConnConfig](), reflect.TypeFor[pgconn.Config]()} {
			if f, ok := typ.FieldByName("createdByParseConfig"); ok && f.Type.Kind() == reflect.Bool && len(f.Index) == 1 {
				found = true
			}
		}
		if !found {
			layoutChanged(t, pgxMod, "neither pgx.ConnConfig nor pgconn.Config has an unexported bool createdByParseConfig",
				"pgx_config.go's madeByParseConfig refuses a hand-built *pgx.ConnConfig with a *ConfigError instead of pgx's panic; without it every config is taken as good")
			return
		}
		cc, err := pgx.ParseConfig("host=127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if !madeByParseConfig(cc) || madeByParseConfig(&pgx.ConnConfig{}) {
			layoutChanged(t, pgxMod, "createdByParseConfig no longer says whether ParseConfig made the config", "madeByParseConfig reads it")
		}
	})

	t.Run("pgx ParseConfig's defaults and validators", func(t *testing.T) {
		cc, err := pgx.ParseConfig("host=127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if !sameFunc(cc.DialFunc, defaultDial) || !sameFunc(cc.LookupFunc, defaultLookup) {
			layoutChanged(t, pgxMod, "ParseConfig's default DialFunc or LookupFunc is no longer a method value of net.Dialer.DialContext or net.Resolver.LookupHost",
				"pgx_config.go's sameFunc tells pgx's defaults from an application's own; NewConnectorFromConfig would refuse every *pgx.ConnConfig")
		}
		for _, attrs := range []string{"read-write", "read-only", "primary", "standby", "prefer-standby", "any"} {
			cc, err := pgx.ParseConfig("host=127.0.0.1 target_session_attrs=" + attrs)
			if err != nil {
				t.Fatal(err)
			}
			if got := pgxTargetSessionAttrs(cc.ValidateConnect); got != attrs {
				layoutChanged(t, pgxMod, fmt.Sprintf("target_session_attrs=%s gives a ValidateConnect that is not pgconn.ValidateConnectTargetSessionAttrs* (read back as %q)", attrs, got),
					"pgx_adapter.go's pgxTargetSessionAttrs recovers the setting from the function's identity")
			}
		}
	})

	t.Run("stdlib.connector hook fields", func(t *testing.T) {
		typ := reflect.TypeOf(stdlib.GetConnector(pgx.ConnConfig{}))
		want := map[string]reflect.Type{
			"BeforeConnect": reflect.TypeFor[func(context.Context, *pgx.ConnConfig) error](),
			"AfterConnect":  reflect.TypeFor[func(context.Context, *pgx.Conn) error](),
			"ResetSession":  reflect.TypeFor[func(context.Context, *pgx.Conn) error](),
			"ShouldPing":    reflect.TypeFor[func(context.Context, stdlib.ShouldPingParams) bool](),
		}
		known := map[string]bool{"ConnConfig": true, "pool": true, "driver": true}
		if typ.Kind() != reflect.Struct {
			layoutChanged(t, pgxMod, fmt.Sprintf("stdlib.GetConnector returns a %s, not the connector struct", typ),
				"openhooks.go's readOpenDBOptions reads the hooks stdlib.OptionOpenDB values set from its fields; WithOpenDBOptions refuses every option")
			return
		}
		for name, ft := range want {
			if f, ok := typ.FieldByName(name); !ok || f.Type != ft || !f.IsExported() {
				layoutChanged(t, pgxMod, fmt.Sprintf("stdlib's connector has no exported field %s %s", name, ft),
					"openhooks.go's readOpenDBOptions reads it to compose the application's hook with pgfast's; WithOpenDBOptions refuses every option")
			}
		}
		for i := range typ.NumField() {
			if name := typ.Field(i).Name; want[name] == nil && !known[name] {
				layoutChanged(t, pgxMod, "stdlib's connector has a new field "+name,
					"an stdlib.OptionOpenDB that sets it is refused by WithOpenDBOptions (readOpenDBOptions) until pgfast composes it")
			}
		}
		called := ""
		h, err := readOpenDBOptions([]stdlib.OptionOpenDB{
			stdlib.OptionBeforeConnect(func(context.Context, *pgx.ConnConfig) error { called += "b"; return nil }),
			stdlib.OptionAfterConnect(func(context.Context, *pgx.Conn) error { called += "a"; return nil }),
			stdlib.OptionResetSession(func(context.Context, *pgx.Conn) error { called += "r"; return nil }),
			stdlib.OptionShouldPing(func(context.Context, stdlib.ShouldPingParams) bool { called += "p"; return true }),
		})
		if err != nil || h.before == nil || h.after == nil || h.reset == nil || h.shouldPing == nil {
			layoutChanged(t, pgxMod, fmt.Sprintf("the stdlib.OptionOpenDB hooks are not read back (%v)", err), "readOpenDBOptions reads them")
			return
		}
		_, _, _, _ = h.before(context.Background(), nil), h.after(context.Background(), nil), h.reset(context.Background(), nil), h.shouldPing(context.Background(), stdlib.ShouldPingParams{})
		if called != "barp" {
			layoutChanged(t, pgxMod, "the hooks read back are not the ones given ("+called+")", "readOpenDBOptions reads them")
		}
		if h, err := readOpenDBOptions(nil); err != nil || h.before != nil || h.after != nil || h.reset != nil {
			layoutChanged(t, pgxMod, "stdlib.GetConnector's no-op defaults are not told from an application's hooks",
				"readOpenDBOptions compares code pointers with a connector made without options; pgfast would count a hook where none was given (a before-connect hook changes how failed logins are retried)")
		}
	})

	t.Run("lib/pq conn: type, pid, secretKey", func(t *testing.T) {
		dc, err := pq.DialOpen(fakeStartupDialer{pid: 4242, key: []byte{1, 2, 3, 4}}, "host=fake user=u dbname=d sslmode=disable")
		if err != nil {
			t.Fatalf("lib/pq's startup against a fake server: %v", err)
		}
		defer dc.Close()
		if !isLibPQConn(dc) {
			layoutChanged(t, pqMod, fmt.Sprintf("the connection type is %T, not *pq.conn", dc),
				"pq_notice.go and pq_cancel.go recognise lib/pq's connection by its type name (pq.SetNoticeHandler panics on another type)")
			return
		}
		pid, key, ok := pqCancelKey(dc)
		if !ok || pid != 4242 || string(key) != string([]byte{1, 2, 3, 4}) {
			layoutChanged(t, pqMod, fmt.Sprintf("*pq.conn no longer keeps BackendKeyData in its unexported pid int and secretKey []byte (read %d, %v, %v)", pid, key, ok),
				"pq_cancel.go's pqCancelKey reads them to send the cancel request when a statement's context ends; without them statements are not cancelled on the server")
		}
	})
}

// fakeStartupDialer connects lib/pq to an in-process server that answers the
// startup message with AuthenticationOk, BackendKeyData(pid, key) and
// ReadyForQuery, then reads until the client closes.
type fakeStartupDialer struct {
	pid uint32
	key []byte
}

func (d fakeStartupDialer) Dial(_, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	go d.serve(server)
	return client, nil
}

func (d fakeStartupDialer) DialTimeout(network, address string, _ time.Duration) (net.Conn, error) {
	return d.Dial(network, address)
}

func (d fakeStartupDialer) serve(c net.Conn) {
	defer c.Close()
	var n [4]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return
	}
	if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(n[:]))-4); err != nil {
		return
	}
	msg := func(typ byte, body []byte) []byte {
		out := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(out[1:], uint32(len(body)+4))
		return append(out, body...)
	}
	var reply []byte
	reply = append(reply, msg('R', []byte{0, 0, 0, 0})...)
	reply = append(reply, msg('K', append(binary.BigEndian.AppendUint32(nil, d.pid), d.key...))...)
	reply = append(reply, msg('Z', []byte{'I'})...)
	if _, err := c.Write(reply); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c)
}
