//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"log"
	"os"

	"github.com/pgfast/pgfast/internal/scale/fleet"
)

// runChild is one measured run in a process of its own: the orchestrator
// passes the front end, the DSN (in $SCALE_DSN, so it is not in ps) and
// where to write the JSON result.
func runChild(c config) error {
	fe := fleet.ByName(c.child)
	if fe == nil {
		return fmt.Errorf("unknown front end %q", c.child)
	}
	at, err := c.sampleTimes()
	if err != nil {
		return err
	}
	lg := log.New(os.Stderr, "  ", log.Ltime)
	res, err := fleet.Run(fleet.Spec{
		FrontEnd:     fe,
		DSN:          os.Getenv("SCALE_DSN"),
		Tenants:      c.tenants,
		ReadyTimeout: c.readyTimeout,
		WaitCap:      c.waitCap,
		SampleAt:     at,
		CPUWindow:    c.cpuWindow,
		CPUProfile:   c.cpuProfile,
		Logf:         lg.Printf,
	})
	if err != nil {
		return err
	}
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return os.WriteFile(c.childOut, data, 0o644)
}
