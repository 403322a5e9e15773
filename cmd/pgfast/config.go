package main

import "github.com/pgfast/pgfast"

// configOf returns the pgfast.Config a diag.Report or diag.DSNInfo carries
// (internal/diag cannot name the type), the zero Config if it holds none.
func configOf(c any) pgfast.Config {
	cfg, _ := c.(pgfast.Config)
	return cfg
}
