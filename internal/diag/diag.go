// Package diag holds what the pgfast command (cmd/pgfast) learns about a DSN
// and its servers: the DSN's meaning without connecting (InspectDSN) and a
// diagnostic connection to every address of every host (Probe). None of it
// is part of pgfast's public API.
//
// # How it is wired
//
// The work needs pgfast's internals (the backends' DSN parsers and host
// groups, the dialer with its socket options, the role rule and the error
// classifier of the driver itself), and package pgfast cannot be imported
// from here without an import cycle. So this package only holds the report
// types, and package pgfast installs its implementation at init time with
// Install. A program using this package imports pgfast too (cmd/pgfast does
// anyway); InspectDSN and Probe panic when nothing was installed.
//
// The report carries pgfast's settings as pgfast.Config and the backend as
// pgfast.Backend, in fields of type any (this package cannot name them): the
// CLI asserts them back to the pgfast types.
package diag

import (
	"context"
	"errors"
	"sync"
)

// Impl is what package pgfast installs.
type Impl struct {
	// InspectDSN parses dsn with backend's parser (a pgfast.Backend).
	InspectDSN func(dsn string, backend any) (*DSNInfo, error)
	// Probe probes every address of every host of dsn, calling progress (if
	// not nil) on Probe's goroutine.
	Probe func(ctx context.Context, dsn string, progress func(Event)) (*Report, error)
}

var (
	mu   sync.Mutex
	impl Impl
)

// Install sets the implementation; package pgfast calls it from init.
func Install(i Impl) {
	mu.Lock()
	defer mu.Unlock()
	impl = i
}

func installed() Impl {
	mu.Lock()
	defer mu.Unlock()
	if impl.InspectDSN == nil || impl.Probe == nil {
		panic(errNotInstalled)
	}
	return impl
}

var errNotInstalled = errors.New("diag: no implementation installed: import github.com/pgfast/pgfast")

// InspectDSN parses dsn with backend's parser (a pgfast.Backend) as
// pgfast.NewConnector does (the backend's own parser, libpq environment
// variables, service and password files) and says what it means to pgfast
// and to the raw driver, without connecting. A bad DSN is a
// *pgfast.ConfigError.
func InspectDSN(dsn string, backend any) (*DSNInfo, error) {
	return installed().InspectDSN(dsn, backend)
}

// Probe connects to every address of every host of dsn, one after another,
// with pgfast's dialer and settings (socket options, connect_timeout per
// address), and reports for each how connecting, TLS and authentication went,
// the server's version and role, and the socket options in effect. It closes
// every connection it makes. The DSN is read with pgx's parser. progress,
// when not nil, is called whenever Probe starts a stage of its work and when
// it is done with an address, on Probe's goroutine.
//
// The error is a *pgfast.ConfigError for a bad DSN (and the report nil), or
// ctx's error when ctx ended first (the report then covers what was probed).
// Unreachable servers are not errors: they are in the report.
func Probe(ctx context.Context, dsn string, progress func(Event)) (*Report, error) {
	return installed().Probe(ctx, dsn, progress)
}
