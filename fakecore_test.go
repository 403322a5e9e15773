package pgfast

import (
	"context"
	"errors"
	"net"
)

// fakeCore is a test's own core: each hook a function field, a nil one
// doing what a healthy core would (no error, alive, hosts in DSN order);
// a nil dialFn fails every dial.
type fakeCore struct {
	cfg          *Config
	dialFn       dialFunc
	checkoutFn   func(ctx context.Context, nc net.Conn) error
	aliveFn      func(nc net.Conn) bool
	onErrorFn    func(nc net.Conn, err error)
	checkRoleFn  func(nc net.Conn, params serverParams) error
	orderHostsFn func(hosts []HostPort) []int
}

var _ core = (*fakeCore)(nil)

var errFakeNoDial = errors.New("fakeCore: no dial function")

func (f *fakeCore) config() *Config {
	if f.cfg == nil {
		return &Config{}
	}
	return f.cfg
}

func (f *fakeCore) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if f.dialFn == nil {
		return nil, errFakeNoDial
	}
	return f.dialFn(ctx, network, address)
}

func (f *fakeCore) checkout(ctx context.Context, nc net.Conn) error {
	if f.checkoutFn == nil {
		return nil
	}
	return f.checkoutFn(ctx, nc)
}

func (f *fakeCore) alive(nc net.Conn) bool { return f.aliveFn == nil || f.aliveFn(nc) }

func (f *fakeCore) onError(nc net.Conn, err error) {
	if f.onErrorFn != nil {
		f.onErrorFn(nc, err)
	}
}

// ignoresErrors is false: a test's core is told every error.
func (f *fakeCore) ignoresErrors() bool { return false }

func (f *fakeCore) checkRole(nc net.Conn, params serverParams) error {
	if f.checkRoleFn == nil {
		return nil
	}
	return f.checkRoleFn(nc, params)
}

func (f *fakeCore) platform() platform { return thisPlatform }

func (f *fakeCore) orderHosts(hosts []HostPort) []int {
	if f.orderHostsFn == nil {
		return inOrder(len(hosts))
	}
	return f.orderHostsFn(hosts)
}
