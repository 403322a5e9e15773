package pgfast

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/pgfast/pgfast/internal/diag"
	"github.com/pgfast/pgfast/internal/netx"
)

// The probe names a connect()'s outcome from the core's evidence classifier:
// every errno the driver judges host-level is a refusal, an unreachable host
// or a timeout, never a plain failure.
func TestProbeDialOutcomeFollowsClassify(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	for _, tc := range []struct {
		err  error
		want diag.DialOutcome
	}{
		{op(syscall.ECONNREFUSED), diag.DialRefused},
		{op(syscall.EHOSTUNREACH), diag.DialUnreachable},
		{op(syscall.ENETUNREACH), diag.DialUnreachable},
		{op(syscall.ETIMEDOUT), diag.DialTimedOut},
		{fmt.Errorf("dial: %w", os.ErrDeadlineExceeded), diag.DialTimedOut},
		{op(syscall.ECONNRESET), diag.DialFailed},
		{net.ErrClosed, diag.DialFailed},
	} {
		if got := dialOutcomeOf(tc.err); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.err, got, tc.want)
		}
		if v := netx.IsHostLevel(tc.err); v != (tc.want == diag.DialRefused || tc.want == diag.DialUnreachable || errors.Is(tc.err, syscall.ETIMEDOUT)) {
			t.Errorf("%v: classify says %v, the probe says %s", tc.err, v, tc.want)
		}
	}
}

// The probe's pick and the driver's role check are one rule: for every
// target_session_attrs and role, probeAccepts agrees with roleViolation.
func TestProbeAcceptsIsRoleViolation(t *testing.T) {
	for _, attrs := range []string{"any", "read-write", "read-only", "primary", "standby"} {
		for _, standby := range []bool{false, true} {
			for _, readOnly := range []bool{false, true} {
				a := diag.AddrReport{Authenticated: true, RoleKnown: true, Standby: standby, ReadOnly: readOnly}
				why, _ := roleViolation(attrs, reportedRole{standby: standby, readOnly: readOnly})
				if got := probeAccepts(&a, attrs); got != (why == "") {
					t.Errorf("%s standby=%v read-only=%v: probe accepts %v, driver says %q", attrs, standby, readOnly, got, why)
				}
			}
		}
	}
	if probeAccepts(&diag.AddrReport{Authenticated: true}, "primary") {
		t.Error("an unknown role accepted for primary")
	}
	if !probeAccepts(&diag.AddrReport{Authenticated: true}, "any") {
		t.Error("an unknown role refused for any")
	}
}

// diag.InspectDSN reaches pgfast's parser through the installed
// implementation and hands back pgfast's own types.
func TestDiagInstalled(t *testing.T) {
	info, err := diag.InspectDSN("host=127.0.0.1 user=u connect_timeout=3", LibPQ)
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := info.Backend.(Backend); !ok || b != LibPQ {
		t.Errorf("Backend %v (%T)", info.Backend, info.Backend)
	}
	if c, ok := info.Config.(Config); !ok || c.Hosts[0].Host != "127.0.0.1" {
		t.Errorf("Config %+v (%T)", info.Config, info.Config)
	}
	var ce *ConfigError
	if _, err := diag.InspectDSN("host=127.0.0.1", "mysql"); !errors.As(err, &ce) {
		t.Errorf("unknown backend: %v", err)
	}
}
