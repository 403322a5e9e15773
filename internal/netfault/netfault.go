// Package netfault injects network faults into tests by running them inside
// a private Linux network namespace and dropping or rejecting loopback TCP
// traffic there with nftables.
//
// Go cannot reliably move a single goroutine into another network namespace
// (goroutines migrate between OS threads, and dialers spawn goroutines of
// their own), so the whole test process is moved instead: a top-level test
// calls [RunInNamespace], which re-executes the test binary under
// `ip netns exec` with a -test.run pattern selecting the fault tests. Those
// tests check [Inside] (and skip when it is false) and then use [Drop],
// [Clear] and [SetHosts] freely: every change is confined to the throwaway
// namespace, which is destroyed afterwards.
//
//	func TestFaults(t *testing.T) {
//		netfault.RunInNamespace(t, "^TestFaultsInside$", nil, 20*time.Second)
//	}
//
//	func TestFaultsInside(t *testing.T) {
//		if !netfault.Inside() {
//			t.Skip("run by TestFaults inside a network namespace")
//		}
//		remove, err := netfault.Drop(netfault.Rule{Addr: "::1", Port: 5432})
//		...
//	}
//
// Only loopback addresses (127.0.0.0/8 and ::1) are ever used: rules and
// hosts entries naming any other address are rejected with an error, and the
// namespace has no interface but lo.
//
// Everything here requires root, iproute2 (`ip`) and nftables (`nft`);
// [Available] reports whether that is the case.
package netfault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

// EnvInside is the environment variable that [RunInNamespace] sets in the
// re-executed test process; its value is the namespace name.
const EnvInside = "PGFAST_NETNS"

// EnvRequire is the environment variable that, when set to "1", turns the
// skip of [RunInNamespace] on a machine where fault tests cannot run into a
// test failure (for CI machines that are expected to run them).
const EnvRequire = "PGFAST_REQUIRE_FAULT_TESTS"

// namePrefix starts the name of every namespace this package creates.
const namePrefix = "pgfast-"

// validName matches the namespace names this package generates. Names from
// the environment are checked against it before they are used in paths or
// commands.
var validName = regexp.MustCompile(`^pgfast-[0-9a-f]{8,32}$`)

// Inside reports whether this process runs inside a netfault namespace, that
// is whether [EnvInside] is set (normally by [RunInNamespace]).
func Inside() bool {
	return os.Getenv(EnvInside) != ""
}

// Name returns the namespace name when [Inside], and "" otherwise.
func Name() string {
	return os.Getenv(EnvInside)
}

// errNotInside is returned by functions that must only change a throwaway
// namespace when called from anywhere else.
var errNotInside = errors.New("netfault: not inside a netfault namespace (" + EnvInside + " unset); use RunInNamespace")

// checkInside verifies that this process really runs in the network
// namespace named by [EnvInside], so that a stray environment variable can
// never make Drop, Clear or SetHosts change the host's own configuration.
func checkInside() error {
	if !Inside() {
		return errNotInside
	}
	name := Name()
	if !validName.MatchString(name) {
		return fmt.Errorf("netfault: %s=%q is not a netfault namespace name", EnvInside, name)
	}
	own, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("netfault: %w", err)
	}
	named, err := os.Stat(filepath.Join(netnsRunDir, name))
	if err != nil {
		return fmt.Errorf("netfault: namespace %s: %w", name, err)
	}
	if !os.SameFile(own, named) {
		return fmt.Errorf("netfault: %s=%s but this process is not in that network namespace", EnvInside, name)
	}
	return nil
}
