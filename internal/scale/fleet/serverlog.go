//go:build linux

package fleet

import (
	"strings"
)

// ServerSettings are the postgresql.conf settings a fleet server needs on
// top of pgtest's: room for every tenant, SCRAM, and a log that names the
// role on every line so logins and FATALs are counted per front end.
func ServerSettings(maxConnections int) map[string]string {
	return map[string]string{
		"max_connections":     itoa(maxConnections),
		"password_encryption": "scram-sha-256",
		"log_connections":     "on",
		"log_line_prefix":     "%m [%p] %q%u@%d ",
	}
}

// LogCounts is what the server log says about one run.
type LogCounts struct {
	// Logins are "connection authorized" lines of the run's role: the
	// sessions the server started for it.
	Logins int `json:"logins"`
	// Received are "connection received" lines over TCP (any role: the
	// server logs them before it knows the role).
	Received int `json:"received"`
	// Fatals are FATAL lines of the run's role, and those of sessions
	// that ended before the server knew their role (in the run's range);
	// FatalKinds counts them by message.
	Fatals     int            `json:"fatals"`
	FatalKinds map[string]int `json:"fatal_kinds,omitempty"`
}

// CountLog counts, in log (the run's byte range of the server log), the
// lines that concern role (see ServerSettings for the line prefix).
func CountLog(log, role string) LogCounts {
	c := LogCounts{FatalKinds: map[string]int{}}
	authorized := "connection authorized: user=" + role + " "
	mine, anonymous := "] "+role+"@", "] @"
	for line := range strings.Lines(log) {
		switch {
		case strings.Contains(line, authorized):
			c.Logins++
		case strings.Contains(line, "connection received: host=") && !strings.Contains(line, "host=[local]"):
			c.Received++
		case (strings.Contains(line, mine) || strings.Contains(line, anonymous)) && strings.Contains(line, "FATAL:"):
			c.Fatals++
			_, msg, _ := strings.Cut(line, "FATAL:")
			msg = strings.TrimSpace(msg)
			if len(msg) > 70 {
				msg = msg[:70]
			}
			c.FatalKinds[msg]++
		}
	}
	if len(c.FatalKinds) == 0 {
		c.FatalKinds = nil
	}
	return c
}

// LogMark is a position in the server log; Since returns what was written
// after it.
type LogMark int

// Mark returns the current end of log.
func Mark(log string) LogMark { return LogMark(len(log)) }

// Since returns the part of log written after m.
func (m LogMark) Since(log string) string {
	if int(m) > len(log) {
		return "" // the log was replaced
	}
	return log[m:]
}
