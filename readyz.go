package pgfast

import (
	"database/sql"
	"encoding/json"
	"net/http"
	"time"
)

// readyzBody is ReadyHandler's JSON body (documented there).
type readyzBody struct {
	Ready     bool         `json:"ready"`
	State     string       `json:"state"`
	Since     time.Time    `json:"since"`
	LastError string       `json:"last_error,omitempty"`
	Addrs     []readyzAddr `json:"addrs"`
}

type readyzAddr struct {
	Addr      string    `json:"addr"`
	Host      string    `json:"host,omitempty"`
	Status    string    `json:"status"`
	OpenConns int       `json:"open_conns"`
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error,omitempty"`
}

// readinessOf reads c's readiness from its state and stats; it does no I/O.
func readinessOf(c *Connector) readyzBody {
	s := c.Stats()
	r := readyzBody{
		Ready: s.State == StateReady,
		State: s.State.String(),
		Since: s.StateSince,
		Addrs: make([]readyzAddr, 0, len(s.Addrs)),
	}
	if s.LastError != nil {
		r.LastError = s.LastError.Error()
	}
	for _, a := range s.Addrs {
		ar := readyzAddr{Addr: a.Addr, Host: a.Host, Status: a.Status, OpenConns: a.OpenConns, Since: a.Since}
		if a.Err != nil {
			ar.LastError = a.Err.Error()
		}
		r.Addrs = append(r.Addrs, ar)
	}
	return r
}

// ReadyHandler returns an http.Handler answering whether db can serve
// queries now: 200 when its connector is ready, else 503 (with Retry-After),
// with a JSON body. It does no I/O, so a probe never adds load to a
// struggling database. A *sql.DB not using pgfast answers 503, "unknown".
//
// It reports ONE database. Point a readiness (or startup) probe at it, never
// a liveness probe: restarting the process does not bring a database back.
// A process serving several databases should answer its own readiness by
// whether it can serve.
//
//	http.Handle("GET /readyz", pgfast.ReadyHandler(db))
//
// The body is read from the connector's Stats, no password in it:
//
//	{
//	  "ready": false,                  // state is "ready"
//	  "state": "down",                 // "connecting", "ready", "down", "closed" ("unknown": not pgfast)
//	  "since": "2026-01-02T15:04:05Z", // when the current state began
//	  "last_error": "...",             // why it is not ready (omitted when none)
//	  "addrs": [{                      // each server address known (AddrStats)
//	    "addr": "10.0.0.5:5432",
//	    "host": "db.example",          // the host name it was resolved from (omitted when none)
//	    "status": "failed",            // "up", "pending", "failed" or "evicted"
//	    "open_conns": 0,               // sockets of the current generation
//	    "since": "2026-01-02T15:04:05Z",
//	    "last_error": "connection refused" // omitted when none
//	  }]
//	}
func ReadyHandler(db *sql.DB) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var r readyzBody
		if c := ConnectorOf(db); c != nil {
			r = readinessOf(c)
		} else {
			r = readyzBody{State: "unknown", LastError: "not a pgfast *sql.DB", Addrs: []readyzAddr{}}
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
