package pgfastotel_test

import (
	"database/sql"
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	_ "github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/pgfastotel"
)

// Serve a pool's metrics to Prometheus through OpenTelemetry's Prometheus
// exporter: during an outage the scrape shows pgfast_connector_state{pgfast_state="down"} 1,
// the failed dials and how long the connector has been down.
func Example_prometheus() {
	db, err := sql.Open("pgfast", "postgres://app@db.internal/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	exp, err := otelprom.New() // registers with prometheus.DefaultRegisterer
	if err != nil {
		log.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	reg, err := pgfastotel.Register(db, pgfastotel.WithMeterProvider(mp), pgfastotel.WithPoolName("app"))
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()

	http.Handle("/metrics", promhttp.Handler())
	log.Fatal(http.ListenAndServe("127.0.0.1:9464", nil))
}
