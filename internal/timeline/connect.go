package timeline

import (
	"strconv"
	"time"
)

// Connect returns how long connect() to an address that silently drops every
// packet takes to fail, with socket options s, and the SYN retransmissions
// on the way. connectTimeout > 0 is the driver's own limit per address
// (libpq's connect_timeout); 0 means none.
func Connect(k Kernel, s Socket, connectTimeout time.Duration) Result {
	k = k.sane()
	var log eventLog
	log.add(0, "SYN sent; no answer")
	maxRetrans := k.SynRetries + k.SynLinearTimeouts
	limit, byUT := modelTimeout(k.SynRetries, k.SynInitialRTO, k.RTOMax), false
	if s.UserTimeout > 0 {
		limit, byUT = s.UserTimeout, true
	}
	rto := k.SynInitialRTO
	prev, next := time.Duration(0), rto
	for retrans := 0; ; retrans++ {
		now := next
		if connectTimeout > 0 && now > connectTimeout {
			return log.result(connectTimeout, CauseConnectTimeout,
				"connect_timeout=%s reached: the driver abandons this address", Format(connectTimeout))
		}
		switch {
		case retrans > 0 && now >= limit && byUT:
			return log.result(now, CauseUserTimeout,
				"%s since the first SYN >= tcp_user_timeout=%s: connect() fails (ETIMEDOUT)", Format(now), Format(s.UserTimeout))
		case retrans >= maxRetrans:
			return log.result(now, CauseSynRetries,
				"%d SYN retransmissions unanswered (tcp_syn_retries=%d%s): connect() fails (ETIMEDOUT)",
				retrans, k.SynRetries, linearNote(k))
		case retrans > 0 && now >= limit:
			return log.result(now, CauseSynRetries,
				"%s since the first SYN >= the %s tcp_syn_retries=%d allows: connect() fails (ETIMEDOUT)",
				Format(now), Format(limit), k.SynRetries)
		}
		if connectTimeout > 0 && now == connectTimeout {
			return log.result(connectTimeout, CauseConnectTimeout,
				"connect_timeout=%s reached: the driver abandons this address", Format(connectTimeout))
		}
		log.add(now, "SYN retransmission %d (%s after the previous SYN)", retrans+1, Format(now-prev))
		prev = now
		// The kernel's backoff: the first tcp_syn_linear_timeouts
		// retransmissions keep the initial RTO, later ones double it.
		if retrans+1 > k.SynLinearTimeouts {
			rto = min(2*rto, k.RTOMax)
		}
		next = now + clampToLimit(rto, now, limit, byUT)
	}
}

// clampToLimit shortens a timer interval so that it expires no later than a
// user timeout (tcp_clamp_rto_to_user_timeout); once the limit has passed
// the timer expires at once.
func clampToLimit(interval, now, limit time.Duration, byUT bool) time.Duration {
	if !byUT {
		return interval
	}
	return max(0, min(interval, limit-now))
}

// linearNote mentions tcp_syn_linear_timeouts when it adds retransmissions.
func linearNote(k Kernel) string {
	if k.SynLinearTimeouts == 0 {
		return ""
	}
	return " + tcp_syn_linear_timeouts=" + strconv.Itoa(k.SynLinearTimeouts)
}

// modelTimeout is the time n retransmissions take when the timeout starts
// at base and doubles up to rtoMax (the kernel's tcp_model_timeout).
func modelTimeout(n int, base, rtoMax time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	thresh := 0
	for thresh < 32 && base<<(thresh+1) <= rtoMax {
		thresh++
	}
	if n <= thresh {
		return time.Duration((int64(2)<<n)-1) * base
	}
	return time.Duration((int64(2)<<thresh)-1)*base + time.Duration(n-thresh)*rtoMax
}
