package main

import (
	"fmt"
	"io"

	"github.com/pgfast/pgfast/internal/timeline"
)

// explainWarnings lists the failures pgfast, with the DSN's settings, never
// detects: each one can hang a connection forever.
func explainWarnings(e explanation) []string {
	var out []string
	for _, sc := range e.scenarios() {
		if sc.healthy || len(sc.results) == 0 || !sc.results[0].Never {
			continue
		}
		r := sc.results[0]
		msg := fmt.Sprintf("pgfast never detects %s", sc.title)
		if r.Cause == timeline.CauseNoKeepalive {
			msg = "with keepalives=0 pgfast never detects a dead peer on an idle connection: a pooled " +
				"connection, or one waiting for a slow query's result, stays open on a dead server until " +
				"something is written, and such a query hangs until its context ends. Remove keepalives=0 " +
				"(pgfast's default is keepalives=1)."
		} else if r.Cause != "" {
			msg += " (" + r.Cause + ")"
		}
		out = append(out, msg)
	}
	return out
}

// writeWarnings prints explainWarnings, if any, before the notes.
func writeWarnings(w io.Writer, e explanation) {
	ws := explainWarnings(e)
	if len(ws) == 0 {
		return
	}
	fmt.Fprintln(w)
	for _, m := range ws {
		writeWrapped(w, "WARNING: ", "  ", m)
	}
}
