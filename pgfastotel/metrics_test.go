package pgfastotel_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/pgfastotel"
)

// newServer creates a PostgreSQL of the test's own, not started (so a DSN
// exists for a server that is down), or skips without PostgreSQL (fails
// under PGFAST_REQUIRE_DB=1).
func newServer(t *testing.T) *pgtest.Server {
	t.Helper()
	s, err := pgtest.New(pgtest.Options{})
	if errors.Is(err, pgtest.ErrNoPostgres) {
		if os.Getenv("PGFAST_REQUIRE_DB") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Cleanup)
	return s
}

// collect reads every metric the reader holds, keyed by name.
func collect(t *testing.T, rd *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != pgfastotel.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// value returns the int64 point of metric name whose attributes include kv.
func value(t *testing.T, ms map[string]metricdata.Metrics, name string, kv ...attribute.KeyValue) (int64, bool) {
	t.Helper()
	m, ok := ms[name]
	if !ok {
		return 0, false
	}
	var points []metricdata.DataPoint[int64]
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		points = d.DataPoints
	case metricdata.Gauge[int64]:
		points = d.DataPoints
	default:
		t.Fatalf("%s: unexpected data %T", name, m.Data)
	}
next:
	for _, p := range points {
		for _, want := range kv {
			if got, ok := p.Attributes.Value(want.Key); !ok || got != want.Value {
				continue next
			}
		}
		return p.Value, true
	}
	return 0, false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetricsThroughAnOutage opens a pool on a server that is down, then
// starts it: the metrics say down (with failed dials), then ready with
// connections in use and idle, for both backends.
func TestMetricsThroughAnOutage(t *testing.T) {
	for _, driver := range []string{"pgfast", "pgfast-pq"} {
		t.Run(driver, func(t *testing.T) {
			srv := newServer(t)
			db, err := sql.Open(driver, srv.DSN("postgres")+" connect_timeout=2")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(7)
			rd := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
			defer mp.Shutdown(context.Background())
			reg, err := pgfastotel.Register(db, pgfastotel.WithMeterProvider(mp), pgfastotel.WithPoolName("orders"), pgfastotel.WithIdleMax(3))
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Unregister()

			pool := attribute.String("db.client.connection.pool.name", "orders")
			c := pgfast.ConnectorOf(db)
			waitFor(t, "state down", func() bool { return c.State() == pgfast.StateDown })
			ms := collect(t, rd)
			if v, _ := value(t, ms, "pgfast.connector.state", pool, attribute.String("pgfast.state", "down")); v != 1 {
				t.Errorf("state down = %d, want 1", v)
			}
			if v, _ := value(t, ms, "pgfast.connector.state", pool, attribute.String("pgfast.state", "ready")); v != 0 {
				t.Errorf("state ready = %d, want 0", v)
			}
			if v, _ := value(t, ms, "pgfast.connector.dials", pool, attribute.String("pgfast.dial.outcome", "failed")); v < 1 {
				t.Errorf("failed dials = %d, want ≥ 1", v)
			}
			if v, _ := value(t, ms, "db.client.connection.max", pool); v != 7 {
				t.Errorf("max = %d, want 7", v)
			}
			if v, _ := value(t, ms, "db.client.connection.idle.max", pool); v != 3 {
				t.Errorf("idle.max = %d, want 3", v)
			}

			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := c.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.PingContext(ctx); err != nil {
				t.Fatal(err)
			}
			ms = collect(t, rd)
			if v, _ := value(t, ms, "pgfast.connector.state", pool, attribute.String("pgfast.state", "ready")); v != 1 {
				t.Errorf("state ready = %d, want 1", v)
			}
			if v, _ := value(t, ms, "db.client.connection.count", pool, attribute.String("db.client.connection.state", "used")); v != 1 {
				t.Errorf("used connections = %d, want 1", v)
			}
			if v, _ := value(t, ms, "pgfast.connector.dials", pool, attribute.String("pgfast.dial.outcome", "ok")); v < 1 {
				t.Errorf("ok dials = %d, want ≥ 1", v)
			}
			if _, ok := value(t, ms, "pgfast.address.connections", pool, attribute.String("pgfast.address.status", "up")); !ok {
				t.Errorf("no pgfast.address.connections point for an up address")
			}
		})
	}
}

// TestNonPgfastDB reports database/sql's metrics for a *sql.DB of another
// driver, and no pgfast.connector metric.
func TestNonPgfastDB(t *testing.T) {
	db := sql.OpenDB(nopConnector{})
	defer db.Close()
	rd := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
	defer mp.Shutdown(context.Background())
	reg, err := pgfastotel.Register(db, pgfastotel.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	ms := collect(t, rd)
	if _, ok := value(t, ms, "db.client.connection.count", attribute.String("db.client.connection.pool.name", "default"),
		attribute.String("db.client.connection.state", "idle")); !ok {
		t.Error("no idle count")
	}
	if _, ok := ms["pgfast.connector.state"]; ok {
		t.Error("connector metrics for a database that does not use pgfast")
	}
}

// TestPrometheusScrapeWhileDown serves the metrics through OpenTelemetry's
// Prometheus exporter while the database is down and checks the text a
// scrape returns.
func TestPrometheusScrapeWhileDown(t *testing.T) {
	srv := newServer(t)
	db, err := sql.Open("pgfast", srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := promclient.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	defer mp.Shutdown(context.Background())
	r, err := pgfastotel.Register(db, pgfastotel.WithMeterProvider(mp), pgfastotel.WithPoolName("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Unregister()
	c := pgfast.ConnectorOf(db)
	waitFor(t, "state down", func() bool { return c.State() == pgfast.StateDown })

	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer hs.Close()
	resp, err := hs.Client().Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	t.Logf("scrape while down:\n%s", text)
	for _, want := range []string{
		`pgfast_connector_state{db_client_connection_pool_name="app",pgfast_state="down"} 1`,
		`pgfast_connector_state{db_client_connection_pool_name="app",pgfast_state="ready"} 0`,
		`db_client_connection_count{db_client_connection_pool_name="app",db_client_connection_state="used"} 0`,
		`pgfast_connector_dials_total{db_client_connection_pool_name="app",pgfast_dial_outcome="failed"}`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}
