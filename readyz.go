package pgfast

import (
	"database/sql"
	"encoding/json"
	"net/http"
	"time"
)

// Readiness is one database's readiness as ReadyHandler reports it, read from
// its connector's State and Stats: no I/O, no waiting.
type Readiness struct {
	// Ready is set when the connector is StateReady.
	Ready bool `json:"ready"`
	// State is "connecting", "ready", "down" or "closed".
	State string `json:"state"`
	// Since is when the current state began.
	Since time.Time `json:"since"`
	// LastError is the latest cause recorded with the state (why it is not
	// ready), empty when there is none. It never contains the password.
	LastError string `json:"last_error,omitempty"`
	// Addrs lists what the connector knows of each server address.
	Addrs []AddrReadiness `json:"addrs"`
}

// AddrReadiness is one server address in a Readiness.
type AddrReadiness struct {
	Addr      string    `json:"addr"`           // ip:port, or the socket path
	Host      string    `json:"host,omitempty"` // the host name it was resolved from
	Status    string    `json:"status"`         // "up", "pending", "failed" or "evicted"
	OpenConns int       `json:"open_conns"`     // sockets of the current generation
	Since     time.Time `json:"since"`          // when the status began
	LastError string    `json:"last_error,omitempty"`
}

// ReadinessOf reads c's readiness from its state and stats; it does no I/O.
func ReadinessOf(c *Connector) Readiness {
	s := c.Stats()
	r := Readiness{
		Ready: s.State == StateReady,
		State: s.State.String(),
		Since: s.StateSince,
		Addrs: make([]AddrReadiness, 0, len(s.Addrs)),
	}
	if s.LastError != nil {
		r.LastError = s.LastError.Error()
	}
	for _, a := range s.Addrs {
		ar := AddrReadiness{Addr: a.Addr, Host: a.Host, Status: a.Status, OpenConns: a.OpenConns, Since: a.Since}
		if a.LastError != nil {
			ar.LastError = a.LastError.Error()
		}
		r.Addrs = append(r.Addrs, ar)
	}
	return r
}

// ReadyHandler returns an http.Handler answering whether db can serve
// queries now: 200 when its connector is ready, else 503 (with Retry-After),
// with a JSON Readiness body. It reads the connector's state without any
// I/O, so it answers at once whatever the database does, and a probe never
// adds load to a database that is struggling. For a *sql.DB that does not use
// pgfast it answers 503 with state "unknown".
//
// It reports ONE database. Point a Kubernetes readiness probe (or a startup
// probe) at it when the process cannot do anything useful without that
// database; never a liveness probe: restarting the process does not bring a
// database back, and pgfast reconnects by itself. A process serving several
// databases (tenants) should keep one such endpoint per database and answer
// its own readiness probe by whether the process itself can serve.
//
//	http.Handle("GET /readyz", pgfast.ReadyHandler(db))
func ReadyHandler(db *sql.DB) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var r Readiness
		if c := ConnectorOf(db); c != nil {
			r = ReadinessOf(c)
		} else {
			r = Readiness{State: "unknown", LastError: "not a pgfast *sql.DB", Addrs: []AddrReadiness{}}
		}
		code := http.StatusOK
		if !r.Ready {
			code = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "1")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(r)
	})
}
