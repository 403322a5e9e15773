package diag

import (
	"errors"
	"testing"
)

func TestNotInstalledPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !errors.Is(r.(error), errNotInstalled) {
			t.Errorf("recovered %v, want errNotInstalled", r)
		}
	}()
	_, _ = InspectDSN("host=x", nil)
}

func TestReportPicked(t *testing.T) {
	r := &Report{Hosts: []HostReport{{Host: "::1", Port: 5432, Addrs: []AddrReport{{Addr: "a"}, {Addr: "b"}}}}}
	if r.Usable() || r.Picked() != nil {
		t.Error("usable without a pick")
	}
	r.Pick = &Pick{Host: 0, Addr: 1}
	if !r.Usable() || r.Picked().Addr != "b" {
		t.Errorf("picked %+v", r.Picked())
	}
	if got := r.Hosts[0].String(); got != "[::1]:5432" {
		t.Errorf("HostReport.String() = %q", got)
	}
}

func TestAddrReportErrAndRole(t *testing.T) {
	tlsErr := errors.New("tls")
	a := AddrReport{TLSErr: tlsErr, StartupErr: errors.New("startup")}
	if a.Err() != tlsErr || a.Role() != "" {
		t.Errorf("Err %v Role %q", a.Err(), a.Role())
	}
	a = AddrReport{RoleKnown: true, Standby: true}
	if a.Err() != nil || a.Role() != "standby" {
		t.Errorf("Err %v Role %q", a.Err(), a.Role())
	}
}
