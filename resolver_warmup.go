package pgfast

import (
	"context"
	"errors"
	"net"
	"testing"
)

// The net package makes part of its resolver's state lazily, on the first
// name lookup of the process: the one-slot semaphores that guard the
// rereading of /etc/resolv.conf and /etc/nsswitch.conf (resolverConfig.ch
// and nsswitchConfig.ch, made in their sync.Once), and for the cgo resolver
// the semaphore that bounds concurrent getaddrinfo calls (threadLimit, made
// in threadOnce). A channel made inside a testing/synctest bubble belongs to
// that bubble, and the Go runtime aborts the whole process when it is used
// from outside ("send on synctest channel from outside bubble"; Go issue
// 80903). pgfast's connector resolves in the background as soon as it is
// made (its readiness probe), so a pool or connector built inside a bubble
// would make the process's first lookup there and every later lookup of the
// process, pgfast's or not, would abort it. Raw pgxpool and sql.Open do no
// I/O when they are made: their first lookup is the caller's first query.
//
// So, in a test binary (the only kind of program that can have a bubble:
// synctest.Test takes a *testing.T), pgfast makes that state when its
// package is initialised, outside any bubble, with lookups that read the
// resolver's configuration files and send nothing on the network. Other
// programs skip it (it costs 0.3 to 0.8 ms of start-up).

func init() {
	if testing.Testing() {
		warmUpResolver()
	}
}

// errWarmUpDial refuses the warm-up's DNS exchange: nothing is sent.
var errWarmUpDial = errors.New("pgfast: resolver warm-up sends no query")

// warmUpResolver makes the net package's lazily created resolver state (see
// above) without network I/O: it reads /etc files and, through libc,
// may ask nscd and the kernel (netlink) for local addresses.
func warmUpResolver() {
	ctx := context.Background()
	// Go's resolver: choosing the lookup order reads resolv.conf and
	// nsswitch.conf (making their semaphores); then /etc/hosts. The name
	// is not a valid domain name, so no DNS query follows, and the Dial
	// would refuse one anyway.
	goResolver := &net.Resolver{
		PreferGo: true,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errWarmUpDial
		},
	}
	_, _ = goResolver.LookupNetIP(ctx, "ip", "pgfast..resolver-warm-up.invalid")
	// The cgo resolver (when the platform's resolver is libc's): a service
	// lookup takes a getaddrinfo slot (making threadLimit) and reads
	// /etc/services. Without cgo it reads /etc/services alone.
	_, _ = net.DefaultResolver.LookupPort(ctx, "tcp", "postgresql")
}
