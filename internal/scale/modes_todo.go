//go:build linux

package main

import "errors"

func runIdle(config) error    { return errors.New("--idle: not implemented yet") }
func runRestart(config) error { return errors.New("--restart: not implemented yet") }
