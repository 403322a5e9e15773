package timeline

import "time"

// Idle returns how long it takes to notice that the peer of an idle
// connection died right after the last ACK, with socket options s, and the
// keep-alive probes on the way. See the package documentation for the rule
// that combines keepalives_count with TCP_USER_TIMEOUT.
func Idle(k Kernel, s Socket) Result {
	k = k.sane()
	if !s.Keepalive {
		return Result{Never: true, Cause: CauseNoKeepalive, Events: []Event{
			{0, "last ACK received; the connection is idle; the peer dies"},
			{0, "keep-alive is off: nothing is sent, the dead peer is noticed only at the next write (then as with unacknowledged data)"},
		}}
	}
	s = s.Effective(k)
	var log eventLog
	log.add(0, "last ACK received; the connection is idle; the peer dies")
	if s.UserTimeout > 0 {
		n := IdleProbes(s.KeepIdle, s.KeepIntvl, s.UserTimeout)
		log.each(n, func(i int) {
			at := s.KeepIdle + time.Duration(i)*s.KeepIntvl
			if i >= s.KeepCount {
				log.add(at, "keep-alive probe %d sent (%s < %s since the last ACK; keepalives_count=%d is overridden)",
					i+1, Format(at), Format(s.UserTimeout), s.KeepCount)
				return
			}
			log.add(at, "keep-alive probe %d sent (%s since the last ACK < tcp_user_timeout=%s)",
				i+1, Format(at), Format(s.UserTimeout))
		})
		at := s.KeepIdle + time.Duration(n)*s.KeepIntvl
		return log.result(at, CauseUserTimeout,
			"%s since the last ACK >= tcp_user_timeout=%s: connection closed (ETIMEDOUT); probe %d not sent",
			Format(at), Format(s.UserTimeout), n+1)
	}
	log.each(s.KeepCount, func(i int) {
		at := s.KeepIdle + time.Duration(i)*s.KeepIntvl
		log.add(at, "keep-alive probe %d sent (%s since the last ACK)", i+1, Format(at))
	})
	at := s.KeepIdle + time.Duration(s.KeepCount)*s.KeepIntvl
	return log.result(at, CauseKeepaliveCount,
		"keepalives_count=%d probes unanswered: connection closed (ETIMEDOUT)", s.KeepCount)
}

// IdleProbes returns how many keep-alive probes are sent before
// TCP_USER_TIMEOUT closes an idle connection to a dead peer: the kernel
// checks the user timeout only when the keep-alive timer expires (at idle,
// idle+interval, ...), and only once a probe has been sent, so the
// connection dies at the first expiry idle + n*interval with n >= 1 and
// idle + n*interval >= userTimeout.
func IdleProbes(idle, interval, userTimeout time.Duration) int {
	if userTimeout <= idle || interval <= 0 {
		return 1
	}
	return max(1, int((userTimeout-idle+interval-1)/interval))
}
