package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/pgfast/pgfast"
)

// TenantStatus is a tenant's readiness as the health endpoints report it,
// read from its connector's Stats: state, since, last error, addresses.
type TenantStatus struct {
	ID        string       `json:"id"`
	Ready     bool         `json:"ready"`
	State     string       `json:"state"`
	Since     time.Time    `json:"since"`
	LastError string       `json:"last_error,omitempty"`
	Addrs     []AddrStatus `json:"addrs"`
}

// AddrStatus is one server address of a tenant (pgfast.AddrStats).
type AddrStatus struct {
	Addr      string `json:"addr"`
	Status    string `json:"status"` // up, pending, failed, evicted
	OpenConns int    `json:"open_conns"`
	LastError string `json:"last_error,omitempty"`
}

// statusOf reads a tenant's state from its connector: no I/O, no waiting.
func statusOf(t *Tenant) TenantStatus {
	s := t.Connector.Stats()
	st := TenantStatus{ID: t.ID, Ready: s.State == pgfast.StateReady, State: s.State.String(),
		Since: s.StateSince, LastError: errText(s.LastError), Addrs: []AddrStatus{}}
	for _, a := range s.Addrs {
		st.Addrs = append(st.Addrs, AddrStatus{Addr: a.Addr, Status: a.Status, OpenConns: a.OpenConns, LastError: errText(a.Err)})
	}
	return st
}

// errText is err's message, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ProcessStatus is the /readyz body: whether this process serves requests,
// with each tenant's state for information only.
type ProcessStatus struct {
	Ready   bool              `json:"ready"`
	Reason  string            `json:"reason,omitempty"` // why not, when not ready
	Tenants map[string]string `json:"tenants"`          // id → connecting, ready, down, closed
}

// Handler serves the tenants:
//
//	GET /readyz               200 while the process serves requests (whatever any tenant's state), 503 once it shuts down
//	GET /tenants/{id}/readyz  200 when that tenant's database is ready, else 503 (Stats of its connector)
//	GET /tenants/{id}/query   SELECT now() on that tenant's database, within queryTimeout
//
// /readyz is the process's readiness probe: a tenant whose database is down
// must not take every other tenant of the process out of service, so it
// only lists the tenants' states. The health endpoints read the connectors'
// state and never touch a database, so they answer at once whatever the
// databases do. A query on a tenant that is down fails at once with 503
// (pgfast.ErrNotReady) instead of waiting out a dead host's timeouts.
func Handler(ts *Tenants, queryTimeout time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		body := ProcessStatus{Ready: !ts.Closing(), Tenants: make(map[string]string, len(ts.All()))}
		if !body.Ready {
			body.Reason = "shutting down"
		}
		for _, t := range ts.All() {
			body.Tenants[t.ID] = t.Connector.State().String()
		}
		writeJSON(w, readyCode(body.Ready), body)
	})
	mux.HandleFunc("GET /tenants/{id}/readyz", func(w http.ResponseWriter, r *http.Request) {
		t := tenantOf(w, r, ts)
		if t == nil {
			return
		}
		st := statusOf(t)
		writeJSON(w, readyCode(st.Ready), st)
	})
	mux.HandleFunc("GET /tenants/{id}/query", func(w http.ResponseWriter, r *http.Request) {
		t := tenantOf(w, r, ts)
		if t == nil {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
		defer cancel()
		var now time.Time
		err := t.DB.QueryRowContext(ctx, "SELECT now()").Scan(&now)
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, map[string]any{"tenant": t.ID, "now": now})
		case errors.Is(err, pgfast.ErrNotReady), errors.Is(err, context.DeadlineExceeded):
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"tenant": t.ID, "error": err.Error()})
		default:
			writeJSON(w, http.StatusInternalServerError, map[string]any{"tenant": t.ID, "error": err.Error()})
		}
	})
	return mux
}

// tenantOf finds the tenant named in the path, answering 404 if there is none.
func tenantOf(w http.ResponseWriter, r *http.Request, ts *Tenants) *Tenant {
	id := r.PathValue("id")
	t := ts.Get(id)
	if t == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no tenant " + id})
	}
	return t
}

func readyCode(ready bool) int {
	if ready {
		return http.StatusOK
	}
	return http.StatusServiceUnavailable
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
