package main

import (
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgfast/pgfast/internal/diag"
)

// probeJSON is the --json form of a probe report. Durations are in
// milliseconds (fractions allowed), keep-alive timings in seconds.
type probeJSON struct {
	Usable             bool         `json:"usable"`
	Interrupted        bool         `json:"interrupted,omitempty"`
	User               string       `json:"user"`
	Database           string       `json:"database"`
	TargetSessionAttrs string       `json:"target_session_attrs"`
	LoadBalanceHosts   string       `json:"load_balance_hosts"`
	Settings           settingsJSON `json:"settings"`
	Hosts              []hostJSON   `json:"hosts"`
	Picked             *pickedJSON  `json:"picked"`
	ElapsedMS          float64      `json:"elapsed_ms"`
}

type settingsJSON struct {
	ConnectTimeoutMS    float64 `json:"connect_timeout_ms"`
	Keepalives          bool    `json:"keepalives"`
	KeepalivesIdleS     float64 `json:"keepalives_idle_s"`     // 0: OS default
	KeepalivesIntervalS float64 `json:"keepalives_interval_s"` // 0: OS default
	KeepalivesCount     int     `json:"keepalives_count"`      // 0: OS default
	TCPUserTimeoutMS    float64 `json:"tcp_user_timeout_ms"`   // 0: not set
}

type hostJSON struct {
	Host         string     `json:"host"`
	Port         uint16     `json:"port"`
	HostAddr     string     `json:"hostaddr,omitempty"`
	ResolveError string     `json:"resolve_error,omitempty"`
	Addresses    []addrJSON `json:"addresses"`
}

type addrJSON struct {
	Network       string      `json:"network"`
	Address       string      `json:"address"`
	Dial          string      `json:"dial"`
	DialMS        float64     `json:"dial_ms"`
	FailedAt      string      `json:"failed_at,omitempty"` // dial, tls or startup
	Error         string      `json:"error,omitempty"`
	SQLState      string      `json:"sqlstate,omitempty"`
	TLS           string      `json:"tls,omitempty"`
	TLSFallback   bool        `json:"tls_fallback,omitempty"`
	Authenticated bool        `json:"authenticated"`
	ServerVersion string      `json:"server_version,omitempty"`
	Role          string      `json:"role,omitempty"`
	ReadOnly      *bool       `json:"default_transaction_read_only,omitempty"`
	Socket        *socketJSON `json:"socket,omitempty"`
	ElapsedMS     float64     `json:"elapsed_ms"`
}

type socketJSON struct {
	Keepalive          bool    `json:"so_keepalive"`
	KeepalivesIdleS    float64 `json:"tcp_keepidle_s"`
	KeepalivesInterval float64 `json:"tcp_keepintvl_s"`
	KeepalivesCount    int     `json:"tcp_keepcnt"`
	TCPUserTimeoutMS   float64 `json:"tcp_user_timeout_ms"`
}

type pickedJSON struct {
	Host    string `json:"host"`
	Address string `json:"address"`
}

// writeProbeJSON prints rep as indented JSON.
func writeProbeJSON(w io.Writer, rep *diag.Report, interrupted bool) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(probeToJSON(rep, interrupted))
}

func probeToJSON(rep *diag.Report, interrupted bool) probeJSON {
	c := configOf(rep.Config)
	out := probeJSON{
		Usable:             rep.Usable() && !interrupted,
		Interrupted:        interrupted,
		User:               rep.User,
		Database:           rep.Database,
		TargetSessionAttrs: c.TargetSessionAttrs,
		LoadBalanceHosts:   c.LoadBalanceHosts,
		Settings: settingsJSON{
			ConnectTimeoutMS:    millis(c.ConnectTimeout),
			Keepalives:          c.Keepalives,
			KeepalivesIdleS:     c.KeepalivesIdle.Seconds(),
			KeepalivesIntervalS: c.KeepalivesInterval.Seconds(),
			KeepalivesCount:     c.KeepalivesCount,
			TCPUserTimeoutMS:    millis(c.TCPUserTimeout),
		},
		Hosts:     []hostJSON{},
		ElapsedMS: millis(rep.Elapsed),
	}
	for _, h := range rep.Hosts {
		hj := hostJSON{Host: h.Host, Port: h.Port, HostAddr: h.HostAddr, Addresses: []addrJSON{}}
		if h.ResolveErr != nil {
			hj.ResolveError = h.ResolveErr.Error()
		}
		for _, a := range h.Addrs {
			hj.Addresses = append(hj.Addresses, addrToJSON(a))
		}
		out.Hosts = append(out.Hosts, hj)
	}
	if a := rep.Picked(); a != nil {
		out.Picked = &pickedJSON{Host: rep.Hosts[rep.Pick.Host].String(), Address: a.Addr}
	}
	return out
}

func addrToJSON(a diag.AddrReport) addrJSON {
	out := addrJSON{
		Network:       a.Network,
		Address:       a.Addr,
		Dial:          string(a.Dial),
		DialMS:        millis(a.DialTime),
		TLS:           a.TLS,
		TLSFallback:   a.TLSFallback,
		Authenticated: a.Authenticated,
		ServerVersion: a.ServerVersion,
		Role:          a.Role(),
		ElapsedMS:     millis(a.Elapsed),
	}
	switch {
	case a.DialErr != nil:
		out.FailedAt, out.Error = "dial", a.DialErr.Error()
	case a.TLSErr != nil:
		out.FailedAt, out.Error = "tls", a.TLSErr.Error()
	case a.StartupErr != nil:
		out.FailedAt, out.Error = "startup", a.StartupErr.Error()
	}
	var pgErr *pgconn.PgError
	if errors.As(a.Err(), &pgErr) {
		out.SQLState = pgErr.Code
	}
	if a.RoleKnown {
		ro := a.ReadOnly
		out.ReadOnly = &ro
	}
	if s := a.Socket; s != nil {
		out.Socket = &socketJSON{
			Keepalive:          s.Keepalive,
			KeepalivesIdleS:    s.KeepalivesIdle.Seconds(),
			KeepalivesInterval: s.KeepalivesInterval.Seconds(),
			KeepalivesCount:    s.KeepalivesCount,
			TCPUserTimeoutMS:   millis(s.TCPUserTimeout),
		}
	}
	return out
}

// millis converts d to fractional milliseconds, rounded to microseconds.
func millis(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)) / float64(time.Millisecond)
}

// errorJSON is what --json prints when there is no report: a bad command
// line or DSN.
type errorJSON struct {
	Usable   bool   `json:"usable"` // always false
	Error    string `json:"error"`
	FailedAt string `json:"failed_at"` // "usage", "dsn" or "probe"
}

// writeJSONError prints an error object (--json always prints an object).
func writeJSONError(w io.Writer, failedAt, msg string) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(errorJSON{Error: msg, FailedAt: failedAt})
}
