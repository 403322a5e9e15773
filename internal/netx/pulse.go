package netx

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// A pulse is the process's check that a dead server speaks PostgreSQL
// again. While a server is dead and used, its pulse is the only thing that
// connects to it (the dialer fails every other dial at once), so however
// many tenants use the address it sees about one attempt per second:
//
//   - each attempt's connect is cut short at pulseCut, so it sends at most
//     two SYNs (the kernel retransmits at 1 s) and at most two attempts are
//     in SYN-SENT at once; every pulseFullEvery-th attempt waits the longest
//     connect_timeout of the subscribers, so a path slower than pulseCut
//     still recovers;
//   - after the handshake it writes an SSLRequest and waits for one byte
//     (PostgreSQL's 'S', 'N' or 'E'; any byte counts): that byte, not the handshake (a frozen server's
//     kernel completes handshakes), lifts the verdict, and every
//     subscriber's connector is told to try at once;
//   - a server that refuses (a reset is cheap) is pulsed when a dial asks,
//     at most every pulseRefusedFloor, and every pulseRefusedEvery besides.
//
// The pulse ends when the server is alive or has no subscriber.
const (
	pulseEvery        = time.Second
	pulseJitter       = 100 * time.Millisecond
	pulseCut          = 1500 * time.Millisecond
	pulseFullEvery    = 8
	pulseRefusedEvery = 250 * time.Millisecond
	pulseRefusedFloor = 50 * time.Millisecond
)

// pulse is one server's running pulse; its goroutine owns it.
type pulse struct {
	s    *server
	wake chan struct{} // capacity 1: a refused server was asked for, or the verdict lifted
}

// pulseDialFunc connects to addr, asks for SSL and waits for the server's
// one-byte answer within ctx. refused: the host reset the connect.
type pulseDialFunc func(ctx context.Context, addr netip.AddrPort) (refused bool, err error)

// pulseLocked claims a pulse for s if it needs one (dead, used, none
// running); the caller starts it (View.start) after unlocking.
func (v *View) pulseLocked(s *server) *pulse {
	if s.pulse != nil || len(s.subs) == 0 || !s.load().verdict.Dead() {
		return nil
	}
	p := &pulse{s: s, wake: make(chan struct{}, 1)}
	s.pulse = p
	return p
}

// poke is a dial finding s dead: it starts the pulse if none runs (one left
// unstarted by a bubble goroutine), and asks a refused server's pulse for an
// attempt now.
func (v *View) poke(s *server) {
	v.mu.Lock()
	p := s.pulse
	started := v.pulseLocked(s)
	v.mu.Unlock()
	if started != nil {
		v.start(false, started)
		return
	}
	if p != nil && s.load().verdict == VerdictRefused {
		p.kick()
	}
}

func (p *pulse) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// runPulse is the pulse's goroutine.
func (v *View) runPulse(p *pulse) {
	s := p.s
	timer := time.NewTimer(rand.N(pulseJitter))
	defer timer.Stop()
	var n int
	var last, fullUntil time.Time
	for {
		refused := false
		select {
		case <-timer.C:
		case <-p.wake:
			refused = true
		}
		v.mu.Lock()
		st := s.load()
		stop := !st.verdict.Dead() || len(s.subs) == 0
		if stop {
			s.pulse = nil
			v.forgetLocked(s)
		}
		full := s.connectTimeout
		v.mu.Unlock()
		if stop {
			return
		}
		if refused {
			// Asked for: a reset costs the server nothing, but not more
			// often than the floor.
			if st.verdict != VerdictRefused {
				continue
			}
			if wait := pulseRefusedFloor - time.Since(last); wait > 0 {
				stopTimer(timer)
				timer.Reset(wait)
				continue
			}
		}
		n++
		budget := pulseCut
		if n%pulseFullEvery == 0 && full > budget && time.Now().After(fullUntil) {
			budget = full // one at a time
			fullUntil = time.Now().Add(full)
		}
		last = time.Now()
		v.pulses.Add(1)
		v.running.Add(1)
		go func() {
			defer v.running.Done()
			v.pulseAttempt(p, budget)
		}()
		next := pulseEvery + rand.N(pulseJitter)
		if st.verdict == VerdictRefused {
			next = pulseRefusedEvery
		}
		stopTimer(timer)
		timer.Reset(next)
	}
}

func stopTimer(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
}

// pulseAttempt makes one attempt and reports what it proves.
func (v *View) pulseAttempt(p *pulse, budget time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	refused, err := v.pulseDial(ctx, p.s.addr)
	switch {
	case err == nil:
		v.alive(p.s)
		p.kick() // the pulse ends now rather than at its next tick
	case refused:
		// The host is back enough to reset: pulse on demand from now on.
		v.mu.Lock()
		if st := p.s.load(); st.verdict.Dead() && st.verdict != VerdictRefused {
			p.s.state.Store(&serverState{verdict: VerdictRefused, epoch: st.epoch, since: st.since, cause: err})
		}
		v.mu.Unlock()
	}
}

// sslRequest is PostgreSQL's SSLRequest: length 8, code 80877103.
var sslRequest = func() (b [8]byte) {
	binary.BigEndian.PutUint32(b[0:4], 8)
	binary.BigEndian.PutUint32(b[4:8], 80877103)
	return b
}()

// dialPulse connects to addr, writes an SSLRequest and waits for the one
// byte a PostgreSQL server answers it with. It closes without sending more.
func dialPulse(ctx context.Context, addr netip.AddrPort) (bool, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return errors.Is(err, syscall.ECONNREFUSED), err
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if _, err := nc.Write(sslRequest[:]); err != nil {
		return false, err
	}
	var b [1]byte
	if _, err := io.ReadFull(nc, b[:]); err != nil {
		return false, err
	}
	// PostgreSQL answers 'S', 'N' or (old servers) 'E'. Any other byte still
	// proves a live peer on the path (a proxy that speaks only direct TLS,
	// say): the tenants' own logins judge what it is. Requiring PostgreSQL's
	// byte would keep every tenant failing fast for ever where raw would
	// connect.
	return false, nil
}
