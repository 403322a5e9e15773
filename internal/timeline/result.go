package timeline

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Event is one step of a timeline: what happens At a time after the start.
type Event struct {
	At   time.Duration
	Text string
}

// Result is the outcome of a failure scenario.
type Result struct {
	// Detected is when the failure is reported to the application, counted
	// from the start of the scenario. Meaningless when Never is set.
	Detected time.Duration
	// Never is set when nothing ever detects the failure.
	Never bool
	// Cause names the setting that ends it, e.g. "tcp_user_timeout".
	Cause string
	// Events is the timeline leading there. Long runs of similar events are
	// shortened to their beginning and end around a single "…" event.
	Events []Event
}

// String returns the detection time, or "never".
func (r Result) String() string {
	if r.Never {
		return "never"
	}
	return Format(r.Detected)
}

// Cause values.
const (
	CauseConnectTimeout = "connect_timeout"
	CauseUserTimeout    = "tcp_user_timeout"
	CauseSynRetries     = "tcp_syn_retries"
	CauseKeepaliveCount = "keepalives_count"
	CauseRetries2       = "tcp_retries2"
	CauseNoKeepalive    = "keepalives=0"
	CauseDeadPeerWindow = "dead-peer window"
	CauseNoUserTimeout  = "no tcp_user_timeout"
)

// Sizes of the shortened event lists.
const (
	headEvents = 8
	tailEvents = 3
)

// eventLog collects events, keeping the first headEvents and the last
// tailEvents, so that a timeline of millions of probes stays short.
type eventLog struct {
	head    []Event
	tail    []Event // ring of the most recent events past head
	next    int     // next ring slot
	skipped int     // events neither in head nor in tail
}

func (l *eventLog) add(at time.Duration, format string, args ...any) {
	e := Event{At: at, Text: fmt.Sprintf(format, args...)}
	if len(l.head) < headEvents {
		l.head = append(l.head, e)
		return
	}
	if len(l.tail) < tailEvents {
		l.tail = append(l.tail, e)
		return
	}
	l.skipped++
	l.tail[l.next] = e
	l.next = (l.next + 1) % tailEvents
}

// each calls f(i) for i in [0, n), f adding one event per call. Calls whose
// events the log would drop anyway are skipped and only counted.
func (l *eventLog) each(n int, f func(i int)) {
	room := max(0, headEvents-len(l.head))
	for i := 0; i < n; i++ {
		if i == room && n-i > tailEvents {
			skip := n - i - tailEvents
			l.skipped += skip
			i += skip
		}
		f(i)
	}
}

// events returns the kept events in order, with a "…" event standing for
// the skipped ones.
func (l *eventLog) events() []Event {
	out := append([]Event(nil), l.head...)
	ordered := append(append([]Event(nil), l.tail[l.next:]...), l.tail[:l.next]...)
	if l.skipped > 0 {
		out = append(out, Event{At: ordered[0].At, Text: fmt.Sprintf("… %d more like the above …", l.skipped)})
	}
	return append(out, ordered...)
}

// result finishes a timeline with its final event.
func (l *eventLog) result(at time.Duration, cause, format string, args ...any) Result {
	text := fmt.Sprintf(format, args...)
	events := append(l.events(), Event{At: at, Text: text})
	return Result{Detected: at, Cause: cause, Events: events}
}

// Format renders d compactly: "200ms", "1.4s", "924.6s", "25s".
func Format(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', -1, 64) + "ms"
	}
	s := strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "s"
}

// FormatLong is Format with minutes added for durations of two minutes and
// more: "924.6s (15m24.6s)".
func FormatLong(d time.Duration) string {
	if d < 2*time.Minute {
		return Format(d)
	}
	return Format(d) + " (" + d.Round(100*time.Millisecond).String() + ")"
}
