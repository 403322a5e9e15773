package timeline

import "time"

// maxRetries2 bounds tcp_retries2 so that a nonsensical sysctl cannot make
// the model loop for long (10000 backoffs of 120s are two weeks).
const maxRetries2 = 10000

// Unacked returns how long it takes to notice that the peer died while data
// sent to it is unacknowledged, with socket options s, and the
// retransmissions on the way. The retransmission timeout is assumed to start
// at k.RTOMin, its floor, as on a fast, idle path.
func Unacked(k Kernel, s Socket) Result {
	k = k.sane()
	var log eventLog
	log.add(0, "data sent (a query); the peer is gone, nothing is acknowledged")
	limit := modelTimeout(k.Retries2, k.RTOMin, k.RTOMax)
	byUT := s.UserTimeout > 0
	rto := k.RTOMin
	var first time.Duration // when the first retransmission was sent
	prev, next := time.Duration(0), rto
	for retrans := 0; ; retrans++ {
		now := next
		switch {
		case retrans > 0 && byUT && now-first >= s.UserTimeout:
			return log.result(now, CauseUserTimeout,
				"%s since the first retransmission >= tcp_user_timeout=%s: connection closed (ETIMEDOUT)",
				Format(now-first), Format(s.UserTimeout))
		case retrans > 0 && !byUT && now >= limit:
			return log.result(now, CauseRetries2,
				"%d retransmissions unanswered, %s since the send (tcp_retries2=%d): connection closed (ETIMEDOUT)",
				retrans, Format(now), k.Retries2)
		}
		if retrans == 0 {
			first = now
		}
		log.add(now, "retransmission %d (%s after the previous send)", retrans+1, Format(now-prev))
		prev = now
		rto = min(2*rto, k.RTOMax)
		next = now + clampToLimit(rto, now, first+s.UserTimeout, byUT)
	}
}
