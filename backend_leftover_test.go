package pgfast

import (
	"testing"
)

// TestParseLeftoverIsACopy: the core edits the parse's leftovers, never the
// backend's own map; configure hands the adapter the cleaned copy.
func TestParseLeftoverIsACopy(t *testing.T) {
	const dsn = "host=127.0.0.1 port=1 sslmode=disable keepalives_idle=3 pgfast_min_conns=2 search_path=app"
	runtime := map[Backend]func(a adapter) map[string]string{
		PGX:   func(a adapter) map[string]string { return a.(*pgxAdapter).cfg.RuntimeParams },
		LibPQ: func(a adapter) map[string]string { return a.(*pqAdapter).cfg.Runtime },
	}
	for _, b := range backends {
		var (
			a   adapter
			p   *parsedDSN
			err error
		)
		if b.backend == PGX {
			a, p, err = parsePGX(dsn)
		} else {
			a, p, err = parsePQ(dsn)
		}
		if err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		own := runtime[b.backend](a)
		p.leftover["injected"] = "x"
		if _, ok := own["injected"]; ok {
			t.Errorf("%s: parsedDSN.leftover is the backend's own map", b.name)
		}
		delete(p.leftover, "injected")
		if _, err := configure(a, p); err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		got := runtime[b.backend](a)
		if _, ok := got["keepalives_idle"]; ok {
			t.Errorf("%s: keepalives_idle still sent to the server: %v", b.name, got)
		}
		if _, ok := got["pgfast_min_conns"]; ok {
			t.Errorf("%s: pgfast_min_conns still sent to the server: %v", b.name, got)
		}
		if got["search_path"] != "app" {
			t.Errorf("%s: search_path lost: %v", b.name, got)
		}
	}
}

// TestAdapterSocketOfForeignConn: an adapter gives no socket for a
// connection of the other backend.
func TestAdapterSocketOfForeignConn(t *testing.T) {
	if nc := (&pgxAdapter{}).socket(&PQConn{}); nc != nil {
		t.Errorf("pgx adapter: socket of a *PQConn = %v", nc)
	}
	if nc := (&pqAdapter{}).socket(nil); nc != nil {
		t.Errorf("lib/pq adapter: socket of nil = %v", nc)
	}
}
