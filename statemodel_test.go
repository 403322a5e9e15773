package pgfast

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
)

// "State follows reality", as a property: random interleavings of what a
// connector can learn (attempts beginning, overlapping and ending in any
// order, well or badly or for good; connections in use checked out alive or
// dead, reading their server's answers or not; evictions; role verdicts;
// callers; a slow state hook; Close) drive a real connector on a fake clock,
// and after every step its state, the cause ErrNotReady wraps and the state
// hook's calls agree with stateModel, a reference written from the README's
// words rather than from loop.go:
//
//   - Ready iff a connection was verified, by a fresh login or by answered
//     I/O (a connection in use that read its server's answer to a request
//     made since Down began: failures while Down do not move that point),
//     since the latest host-level failure;
//     after an error waiting cannot fix, only a fresh login counts.
//   - A failure is dated by when its attempt began: it changes nothing when a
//     connection was verified after that.
//   - A login the server answered with an error (53300) is a slow or
//     refusing server: never Down; it fails to its caller (and to callers
//     waiting for it while connecting) and becomes the cause shown.
//   - Reports are applied in the order they were made (one queue), each
//     change is one hook call, in order, closed last.
//
// Each sequence comes from a seed; a failure prints the seed and the steps.
// PGFAST_STATEMODEL_SEED (or -statemodel.seed) replays one seed,
// PGFAST_STATEMODEL_RUNS (or -statemodel.runs) sets how many sequences run.

var (
	stateModelSeed = flag.Uint64("statemodel.seed", 0, "seed of TestStateFollowsReality (0: random)")
	stateModelRuns = flag.Int("statemodel.runs", 0, "sequences TestStateFollowsReality runs (0: default)")
)

// stateModelDefaultRuns keeps the test within a few seconds under -race.
const stateModelDefaultRuns = 2000

// modelSeed is the seed the flag or the environment sets, else a random one.
func modelSeed(t *testing.T) uint64 {
	seed := *stateModelSeed
	if v := os.Getenv("PGFAST_STATEMODEL_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("PGFAST_STATEMODEL_SEED: %v", err)
		}
		seed = n
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	return seed
}

func TestStateFollowsReality(t *testing.T) {
	seed := modelSeed(t)
	runs := stateModelDefaultRuns
	if testing.Short() {
		runs = 200
	}
	if *stateModelRuns > 0 {
		runs = *stateModelRuns
	}
	if v := os.Getenv("PGFAST_STATEMODEL_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PGFAST_STATEMODEL_RUNS=%q", v)
		}
		runs = n
	}
	t.Logf("seed %d, %d sequences (replay: PGFAST_STATEMODEL_SEED=%d)", seed, runs, seed)
	steps := 0
	for i := 0; i < runs; i++ {
		var failed bool
		synctest.Test(t, func(t *testing.T) {
			r := newModelRun(t, seed, uint64(i))
			r.run()
			steps += len(r.trail)
			failed = r.failed
		})
		if failed || t.Failed() {
			t.Fatalf("sequence %d of seed %d disagrees with the model (replay: PGFAST_STATEMODEL_SEED=%d)", i, seed, seed)
		}
	}
	t.Logf("%d steps", steps)
}

// stateModel is the reference: what the README says the state must be.
type stateModel struct {
	st        State
	cause     error // what ErrNotReady wraps while Down
	perm      bool  // the cause is an error waiting cannot fix
	needFresh bool  // an error waiting cannot fix, and no fresh login since
	oks       int   // connections verified so far
	fails     int   // failures recorded so far
	refusals  int   // attempts the server answered with an error (no state change)
	hooks     []hookCall
	armed     bool         // the next change holds the loop in the hook
	held      bool         // the loop is in the hook: reports queue up
	queue     []modelEvent // reports made while held, in order
}

type modelEventKind int

const (
	meVerified modelEventKind = iota // a connection works
	meFailed                         // an attempt failed
	meEvicted                        // a host-level failure on a connection in use
)

type modelEvent struct {
	kind  modelEventKind
	fresh bool  // meVerified: by a fresh login
	err   error // meFailed, meEvicted
	since int   // meFailed: connections verified when the attempt began
	// anyError: every error of this attempt means Down (a background attempt:
	// nothing was verified); otherwise only a network failure or an error
	// waiting cannot fix does (a fresh dial the server answered).
	anyError bool
}

func newStateModel() *stateModel { return &stateModel{st: StateConnecting} }

// report is one thing the connector is told, applied unless the loop is held.
func (m *stateModel) report(e modelEvent) {
	if m.held {
		m.queue = append(m.queue, e)
		return
	}
	m.apply(e)
}

func (m *stateModel) apply(e modelEvent) {
	switch e.kind {
	case meVerified:
		if m.needFresh && !e.fresh {
			return // connections opened before a password change do not end Down
		}
		m.oks++
		if e.fresh {
			m.needFresh = false
		}
		m.set(StateReady, nil, false)
	case meFailed:
		if m.oks != e.since {
			return // a connection was verified after this attempt began: older news
		}
		perm := isModelPermanent(e.err)
		var ne net.Error
		var coded interface{ SQLState() string }
		switch {
		case perm:
			m.needFresh = true
			m.set(StateDown, e.err, true)
		case errors.As(e.err, &coded):
			// The server answered: slow or refusing, never Down; the
			// attempt fails to its caller only (and to those waiting
			// for it while connecting).
			m.refusals++
			if m.st != StateReady && m.st != StateClosed && !m.perm {
				m.cause = e.err
			}
		case e.anyError || errors.As(e.err, &ne):
			m.set(StateDown, e.err, false)
		}
	case meEvicted:
		m.set(StateDown, e.err, false)
	}
}

func (m *stateModel) set(st State, err error, perm bool) {
	if m.st == StateClosed {
		return
	}
	if st == StateDown && m.st != StateDown {
		m.fails++ // Down began: answered I/O counts from here (README)
	}
	m.cause, m.perm = err, perm && st == StateDown
	if m.st == st {
		return
	}
	m.st = st
	m.hooks = append(m.hooks, hookCall{st, err})
	if m.armed {
		m.armed, m.held = false, true
	}
}

// release lets the held loop go on: the queued reports apply in order.
func (m *stateModel) release() {
	m.held = false
	q := m.queue
	m.queue = nil
	for _, e := range q {
		m.apply(e)
	}
}

func (m *stateModel) close() { m.set(StateClosed, ErrClosed, false) }

// The errors attempts end with, each unique, so the cause can be told.
type (
	modelAuthError   struct{ id int } // 28P01: waiting cannot fix it
	modelServerError struct{ id int } // 53300: the server answered
)

func (e modelAuthError) Error() string {
	return fmt.Sprintf("password authentication failed (SQLSTATE 28P01) #%d", e.id)
}
func (e modelAuthError) SQLState() string { return "28P01" }
func (e modelServerError) Error() string {
	return fmt.Sprintf("sorry, too many clients already (SQLSTATE 53300) #%d", e.id)
}
func (e modelServerError) SQLState() string { return "53300" }

func isModelPermanent(err error) bool {
	var a modelAuthError
	return errors.As(err, &a)
}

// modelAttemptKind is who made a connection attempt.
type modelAttemptKind int

const (
	maBackground modelAttemptKind = iota // the connector's own, while not Ready
	maWarm                               // the connector's own, while Ready
	maCaller                             // a caller's Connect
	maRole                               // a role verification's fresh connection
)

func (k modelAttemptKind) String() string {
	return [...]string{"background", "warm", "caller", "role"}[k]
}

type modelAttempt struct {
	a      *gateAttempt
	kind   modelAttemptKind
	since  int
	caller *modelCaller
	err    error // how it ended, when it failed
}

type modelCaller struct {
	id       int
	refusals int // the model's refusals when it called
	cancel   context.CancelFunc
	done     chan callerResult
	over     bool
}

type callerResult struct {
	err error
}

type modelCallerKey struct{}

// modelConn is a connection in use: its socket, its server's end, and what
// the model knows of it.
type modelConn struct {
	tc  net.Conn
	srv net.Conn
	// handedOutAt: the failure count when it was last handed out while
	// Down (-1: not since); answered: it read its server's answer since.
	handedOutAt int
	answered    bool
}

// modelRun is one sequence.
type modelRun struct {
	t        *testing.T
	rng      *rand.Rand
	g        *gateBackend
	c        *Connector
	h        *stateCalls
	m        *stateModel
	hold     chan struct{}
	attempts map[*gateAttempt]*modelAttempt
	order    []*modelAttempt
	conns    []*modelConn
	callers  []*modelCaller
	trail    []string
	errID    int
	failed   bool
	closed   bool
}

var modelAddrs = []netip.AddrPort{
	netip.MustParseAddrPort("127.0.0.1:5432"),
	netip.MustParseAddrPort("127.0.0.2:5432"),
	netip.MustParseAddrPort("127.0.0.3:5432"),
}

func newModelRun(t *testing.T, seed, seq uint64) *modelRun {
	rng := rand.New(rand.NewPCG(seed, seq))
	g := &gateBackend{rnd: rand.New(rand.NewPCG(seed^0x9e3779b97f4a7c15, seq))}
	h := &stateCalls{}
	minConns := 1 + rng.IntN(2)
	dsn := fmt.Sprintf("%s target_session_attrs=read-write pgfast_min_conns=%d", gateDSN, minConns)
	r := &modelRun{t: t, rng: rng, g: g, h: h, m: newStateModel(), attempts: map[*gateAttempt]*modelAttempt{}}
	r.c = newGateConnector(t, g, dsn, options{stateHook: h.hook})
	r.note("seed %d sequence %d: min_conns %d", seed, seq, minConns)
	return r
}

func (r *modelRun) note(format string, args ...any) {
	r.trail = append(r.trail, fmt.Sprintf(format, args...))
}

func (r *modelRun) fail(format string, args ...any) {
	if r.failed {
		return
	}
	r.failed = true
	var b strings.Builder
	for i, s := range r.trail {
		fmt.Fprintf(&b, "  %3d %s\n", i, s)
	}
	r.t.Errorf("%s\nsteps:\n%smodel: state %s cause %v permanent %v; hook calls %v; connector: hook calls %v",
		fmt.Sprintf(format, args...), b.String(), r.m.st, r.m.cause, r.m.perm, r.m.hooks, r.h.callsCopy())
}

func (r *modelRun) run() {
	synctest.Wait()
	r.settle()
	n := 20 + r.rng.IntN(100)
	for i := 0; i < n && !r.failed && !r.closed; i++ {
		r.step()
		r.settle()
	}
	if r.m.held {
		r.release()
		r.settle()
	}
	if !r.closed {
		r.closeConnector()
		r.settle()
	}
	r.cleanup()
	r.compare() // nothing after closed, whatever ends late
}

// step takes one random action. While the loop is held in the hook, the
// actions that report (attempts ending, checkouts, reads) are likelier, so
// reports queue up together.
func (r *modelRun) step() {
	pending := r.pendingAttempts()
	live := r.liveConns()
	w := [...]int{2, 5, 1, 3, 3, 2, 1, 1, 1, 1}
	switch {
	case r.m.st == StateReady && !r.m.armed && !r.m.held && r.dialingCallers() > 0:
		// a caller's dial in flight when the state changes: its success
		// is a fresh login reported while the loop is busy
		w = [...]int{2, 4, 1, 3, 1, 1, 1, 1, 4, 0}
	case r.m.held:
		w = [...]int{1, 6, 1, 0, 4, 3, 3, 1, 0, 2}
	case r.m.st == StateDown && len(live) > 0:
		w = [...]int{2, 4, 1, 0, 4, 3, 1, 1, 1, 1}
	}
	total := 0
	for _, x := range w {
		total += x
	}
	for {
		k, n := 0, r.rng.IntN(total)
		for n >= w[k] {
			n -= w[k]
			k++
		}
		switch {
		case k == 0:
			r.advance()
			return
		case k == 1 && len(pending) > 0:
			r.endAttempt(r.pickAttempt(pending))
			return
		case k == 2:
			r.evict(live)
			return
		case k == 3 && r.m.st == StateReady && len(live) < 6:
			r.newConn()
			return
		case k == 4 && len(live) > 0:
			r.checkout(r.pickConn(live, func(mc *modelConn) bool { return mc.answered }))
			return
		case k == 5 && len(live) > 0:
			r.read(r.pickConn(live, func(mc *modelConn) bool { return mc.handedOutAt == r.m.fails }))
			return
		case k == 6 && len(live) > 0:
			r.roleVerdict(live[r.rng.IntN(len(live))])
			return
		case k == 7 && !r.m.armed && (r.m.st != StateConnecting || r.rng.IntN(3) == 0):
			// (While the loop is held the state is not Connecting: no
			// caller waits for what the queued reports will make of it.)
			r.callConnect()
			return
		case k == 8 && !r.m.held && !r.m.armed && r.waitingCallers() == 0:
			r.armHold()
			return
		case k == 9 && r.m.held:
			r.release()
			return
		case k == 8 && r.rng.IntN(10) == 0 && !r.m.held:
			r.closeConnector()
			return
		}
	}
}

var modelSleeps = []time.Duration{
	10 * time.Millisecond, 150 * time.Millisecond, 600 * time.Millisecond,
	1100 * time.Millisecond, 2500 * time.Millisecond, 16 * time.Second, 31 * time.Second,
}

func (r *modelRun) advance() {
	d := modelSleeps[r.rng.IntN(len(modelSleeps))]
	r.note("advance %s", d)
	time.Sleep(d)
	synctest.Wait()
}

func (r *modelRun) nextErr(class int) error {
	r.errID++
	switch class {
	case 0:
		return netTimeout{r.errID}
	case 1:
		return modelAuthError{r.errID}
	default:
		return modelServerError{r.errID}
	}
}

// endAttempt ends a pending attempt: success, a network failure, an error
// waiting cannot fix, another server error, or (a caller's) given up.
func (r *modelRun) endAttempt(ma *modelAttempt) {
	if ma.kind == maCaller && r.rng.IntN(6) == 0 {
		r.note("caller %d gives up its dial (attempt %d)", ma.caller.id, ma.a.id)
		ma.caller.cancel()
		synctest.Wait()
		return
	}
	if r.rng.IntN(4) < 2+btoi(r.m.held) {
		r.note("attempt %d (%s, began after %d verifications) succeeds", ma.a.id, ma.kind, ma.since)
		ma.a.finish(nil)
		r.m.report(modelEvent{kind: meVerified, fresh: true})
		if ma.kind == maRole {
			// whichever address it landed on, the verified one is
			// evicted for its role: no state change
			r.note("  (role verification done: the address is evicted for its role)")
		}
		return
	}
	err := r.nextErr(r.rng.IntN(3))
	ma.err = err
	r.note("attempt %d (%s, began after %d verifications) fails: %v", ma.a.id, ma.kind, ma.since, err)
	ma.a.finish(err)
	switch ma.kind {
	case maBackground:
		r.m.report(modelEvent{kind: meFailed, err: err, since: ma.since, anyError: true})
	case maWarm, maCaller:
		r.m.report(modelEvent{kind: meFailed, err: err, since: ma.since})
	case maRole:
		// the address is evicted for its role: no state change
	}
}

// evict reports a host-level failure on a connection in use (every socket
// of its address shut down), or, now and then, a failure that is not
// host-level (no state change).
func (r *modelRun) evict(live []*modelConn) {
	r.errID++
	cause := fmt.Errorf("connection timed out #%d", r.errID)
	down := r.rng.IntN(4) != 0
	how := down
	if len(live) == 0 || r.rng.IntN(4) != 0 {
		if !down {
			return
		}
		// a host whose connections are not in this run's list
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + r.rng.IntN(3))}), 5432)
		r.note("eviction of %s (no connection): %v", addr, cause)
		r.c.onEvict(addr, cause, how)
	} else {
		mc := live[r.rng.IntN(len(live))]
		g, _ := netx.GenOf(mc.tc)
		r.note("eviction (down %v) of %s gen %d: %v", down, g.Addr, g.Number(), cause)
		if !netx.Evict(mc.tc, cause, how) {
			r.fail("a live connection's generation was not current")
			return
		}
	}
	synctest.Wait()
	if down {
		r.m.report(modelEvent{kind: meEvicted, err: cause})
	}
}

func (r *modelRun) newConn() {
	addr := modelAddrs[r.rng.IntN(len(modelAddrs))]
	tc, srv := trackedPipe(r.c, addr)
	r.conns = append(r.conns, &modelConn{tc: tc, srv: srv, handedOutAt: -1})
	r.note("connection %p to %s in use", tc, addr)
}

// checkout hands a connection out: alive (the check passes) or dead.
func (r *modelRun) checkout(mc *modelConn) {
	if r.rng.IntN(5) == 0 {
		r.note("checkout of %p: dead", mc.tc)
		netx.Doom(mc.tc)
		if err := r.c.core.checkout(context.Background(), mc.tc); err == nil {
			r.fail("a dead connection passed its checkout")
		}
		r.drop(mc)
		synctest.Wait()
		return
	}
	r.note("checkout of %p: alive", mc.tc)
	if err := r.c.core.checkout(context.Background(), mc.tc); err != nil {
		r.fail("checkout of a live connection: %v", err)
		return
	}
	synctest.Wait()
	if r.m.st != StateDown {
		return
	}
	if mc.handedOutAt == r.m.fails && mc.answered {
		r.note("  (it answered a request made since the latest failure)")
		r.m.report(modelEvent{kind: meVerified})
		return
	}
	if mc.handedOutAt != r.m.fails {
		mc.handedOutAt, mc.answered = r.m.fails, false
	}
}

// read makes a connection read its server's answer.
func (r *modelRun) read(mc *modelConn) {
	r.note("%p reads its server's answer", mc.tc)
	answer(r.t, mc.tc, mc.srv)
	mc.answered = true
}

// roleVerdict: the connection's server reports in_hot_standby=on to a
// read-write pool: dropped, and its server verified with a fresh connection.
func (r *modelRun) roleVerdict(mc *modelConn) {
	r.note("role verdict on %p: in_hot_standby=on", mc.tc)
	err := r.c.core.checkRole(mc.tc, fakeParams{"in_hot_standby": "on", "default_transaction_read_only": "off"})
	if err == nil {
		r.fail("a standby passed a read-write role check")
	}
	r.drop(mc)
	synctest.Wait()
}

func (r *modelRun) callConnect() {
	ctx, cancel := context.WithCancel(context.Background())
	cl := &modelCaller{id: len(r.callers), refusals: r.m.refusals, cancel: cancel, done: make(chan callerResult, 1)}
	ctx = context.WithValue(ctx, modelCallerKey{}, cl)
	r.callers = append(r.callers, cl)
	r.note("caller %d: Connect (state %s)", cl.id, r.m.st)
	go func() {
		dc, err := r.c.Connect(ctx)
		if dc != nil {
			_ = dc.Close()
		}
		cl.done <- callerResult{err}
	}()
	synctest.Wait()
}

func (r *modelRun) armHold() {
	r.note("the state hook will hold the loop at the next change")
	ch := make(chan struct{})
	r.hold = ch
	r.h.mu.Lock()
	r.h.hold = ch
	r.h.mu.Unlock()
	r.m.armed = true
}

func (r *modelRun) release() {
	r.note("the state hook returns (%d reports queued)", len(r.m.queue))
	close(r.hold)
	r.hold = nil
	synctest.Wait()
	r.m.release()
}

func (r *modelRun) closeConnector() {
	if r.m.armed {
		r.h.mu.Lock()
		r.h.hold = nil
		r.h.mu.Unlock()
		r.m.armed = false
	}
	r.note("Close")
	if err := r.c.Close(); err != nil {
		r.fail("Close: %v", err)
	}
	synctest.Wait()
	r.m.close()
	r.closed = true
}

func (r *modelRun) drop(mc *modelConn) {
	_ = mc.tc.Close()
	_ = mc.srv.Close()
	for i, x := range r.conns {
		if x == mc {
			r.conns = append(r.conns[:i], r.conns[i+1:]...)
			return
		}
	}
}

// liveConns drops the connections an eviction shut down and returns the rest.
func (r *modelRun) liveConns() []*modelConn {
	var live []*modelConn
	for _, mc := range append([]*modelConn(nil), r.conns...) {
		if netx.Evicted(mc.tc) {
			r.drop(mc)
			continue
		}
		live = append(live, mc)
	}
	return live
}

// pickAttempt picks a pending attempt, while the loop is held half the time
// among the callers' (fresh logins the loop will learn of in a queue).
func (r *modelRun) pickAttempt(pending []*modelAttempt) *modelAttempt {
	if r.m.held && r.rng.IntN(2) == 0 {
		var callers []*modelAttempt
		for _, ma := range pending {
			if ma.kind == maCaller {
				callers = append(callers, ma)
			}
		}
		if len(callers) > 0 {
			return callers[r.rng.IntN(len(callers))]
		}
	}
	return pending[r.rng.IntN(len(pending))]
}

// dialingCallers counts the callers' dials in flight.
func (r *modelRun) dialingCallers() int {
	n := 0
	for _, ma := range r.pendingAttempts() {
		if ma.kind == maCaller {
			n++
		}
	}
	return n
}

// pickConn picks a connection, half the time among those that match (the
// ones whose next step tells the most).
func (r *modelRun) pickConn(live []*modelConn, match func(*modelConn) bool) *modelConn {
	if r.rng.IntN(2) == 0 {
		var m []*modelConn
		for _, mc := range live {
			if match(mc) {
				m = append(m, mc)
			}
		}
		if len(m) > 0 {
			return m[r.rng.IntN(len(m))]
		}
	}
	return live[r.rng.IntN(len(live))]
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (r *modelRun) pendingAttempts() []*modelAttempt {
	var p []*modelAttempt
	for _, ma := range r.order {
		if !ma.a.ended.Load() {
			p = append(p, ma)
		}
	}
	return p
}

// waitingCallers counts the callers whose Connect waits for the state (not
// for a dial of their own).
func (r *modelRun) waitingCallers() int {
	dialing := map[*modelCaller]bool{}
	for _, ma := range r.order {
		if ma.caller != nil {
			dialing[ma.caller] = true
		}
	}
	n := 0
	for _, cl := range r.callers {
		if !cl.over && !dialing[cl] {
			n++
		}
	}
	return n
}

// settle registers the attempts that began during the step, collects the
// callers that returned, and compares the connector with the model.
func (r *modelRun) settle() {
	for _, a := range r.g.all() {
		if r.attempts[a] != nil {
			continue
		}
		ma := &modelAttempt{a: a, since: r.m.oks}
		switch cl, _ := a.ctx.Value(modelCallerKey{}).(*modelCaller); {
		case cl != nil:
			ma.kind, ma.caller = maCaller, cl
		case netx.IsNoSkip(a.ctx) && r.m.st == StateReady:
			ma.kind = maWarm
		case netx.IsNoSkip(a.ctx):
			ma.kind = maBackground
		default:
			ma.kind = maRole
		}
		r.attempts[a] = ma
		r.order = append(r.order, ma)
		r.note("  attempt %d begins (%s)", a.id, ma.kind)
	}
	for _, cl := range r.callers {
		if cl.over {
			continue
		}
		select {
		case res := <-cl.done:
			cl.over = true
			r.checkCaller(cl, res.err)
		default:
		}
	}
	r.compare()
}

// checkCaller judges what a caller's Connect returned.
func (r *modelRun) checkCaller(cl *modelCaller, err error) {
	var own *modelAttempt
	for _, ma := range r.order {
		if ma.caller == cl {
			own = ma
		}
	}
	r.note("  caller %d returns: %v", cl.id, err)
	switch {
	case err == nil:
		if r.m.st == StateClosed {
			r.fail("caller %d got a connection from a closed connector", cl.id)
		}
	case errors.Is(err, ErrClosed):
		if r.m.st != StateClosed {
			r.fail("caller %d: ErrClosed while %s", cl.id, r.m.st)
		}
	case own != nil && own.a.ended.Load():
		if own.err != nil && !errors.Is(err, own.err) {
			r.fail("caller %d: %v, want its dial's own %v", cl.id, err, own.err)
		}
	case errors.Is(err, ErrNotReady) && r.m.st == StateConnecting && r.m.refusals > cl.refusals:
		// The attempt it waited for was refused by the server.
	case errors.Is(err, ErrNotReady):
		if r.m.st != StateDown {
			r.fail("caller %d: ErrNotReady while the model is %s", cl.id, r.m.st)
		} else if !errors.Is(err, r.m.cause) {
			r.fail("caller %d: %v, want ErrNotReady wrapping %v", cl.id, err, r.m.cause)
		}
	default:
		r.fail("caller %d: unexpected %v", cl.id, err)
	}
}

func (r *modelRun) compare() {
	if r.failed {
		return
	}
	c, m := r.c, r.m
	if st := c.State(); st != m.st {
		r.fail("state %s, model %s", st, m.st)
		return
	}
	st, _, cause := c.ready.load()
	if st == StateDown {
		if !errors.Is(cause, m.cause) {
			r.fail("cause %v, model %v", cause, m.cause)
			return
		}
		if perm, _ := c.ready.failedPermanently(); perm != m.perm {
			r.fail("down for good %v, model %v", perm, m.perm)
			return
		}
		if err := c.notReady(0, nil); !errors.Is(err, ErrNotReady) || !errors.Is(err, m.cause) {
			r.fail("ErrNotReady %v does not wrap %v", err, m.cause)
			return
		}
	}
	calls := r.h.callsCopy()
	if len(calls) != len(m.hooks) {
		r.fail("%d state hook calls, model %d", len(calls), len(m.hooks))
		return
	}
	for i, got := range calls {
		want := m.hooks[i]
		if got.st != want.st || (want.err == nil) != (got.err == nil) || want.err != nil && !errors.Is(got.err, want.err) {
			r.fail("state hook call %d: %s %v, model %s %v", i, got.st, got.err, want.st, want.err)
			return
		}
	}
	if n := c.Stats().StateChanges; n != int64(len(m.hooks)) && m.st != StateClosed {
		r.fail("%d state changes counted, %d hook calls", n, len(m.hooks))
	}
}

// cleanup ends what is left: callers' dials, connections.
func (r *modelRun) cleanup() {
	if r.hold != nil {
		close(r.hold)
	}
	for _, ma := range r.order {
		if !ma.a.ended.Load() {
			if ma.kind != maCaller {
				r.fail("attempt %d (%s) still pending after Close", ma.a.id, ma.kind)
			}
			ma.a.finish(errors.New("test over"))
		}
	}
	for _, cl := range r.callers {
		cl.cancel()
		if !cl.over {
			<-cl.done
		}
	}
	for _, mc := range append([]*modelConn(nil), r.conns...) {
		r.drop(mc)
	}
	synctest.Wait()
}

func (s *stateCalls) callsCopy() []hookCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hookCall(nil), s.calls...)
}

// TestInboxKeepsWhatEveryReportSays: the loop's queue merges repeated news
// while the loop is busy; for any sequence of reports, applying what the
// queue hands the loop leaves the reference model exactly where applying
// every report in order does (issue 17, 6: a fresh login's verification
// merged with a checkout's must stay fresh).
func TestInboxKeepsWhatEveryReportSays(t *testing.T) {
	seed := modelSeed(t)
	t.Logf("seed %d (replay: PGFAST_STATEMODEL_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for i := 0; i < 5000; i++ {
		c := &Connector{in: inbox{draining: true}} // posts only queue
		raw, want := newStateModel(), []event(nil)
		for n := 1 + rng.IntN(12); len(want) < n; {
			var e event
			switch rng.IntN(5) {
			case 0:
				e = event{kind: evVerified, fresh: true}
			case 1:
				e = event{kind: evVerified}
			case 2:
				e = event{kind: evAttemptNow}
			case 3:
				e = event{kind: evDialFailed, err: modelAuthError{len(want)}}
			default:
				e = event{kind: evEvicted, err: netTimeout{len(want)}, down: true}
			}
			want = append(want, e)
			c.post(e)
		}
		got := newStateModel()
		for _, e := range want {
			applyToModel(raw, e)
		}
		for _, e := range c.takeEvents() {
			applyToModel(got, e)
		}
		if got.st != raw.st || got.cause != raw.cause || got.needFresh != raw.needFresh || len(got.hooks) != len(raw.hooks) {
			t.Fatalf("reports %s: applied one by one %s (cause %v, hook calls %v), as queued %s (cause %v, hook calls %v)",
				describeEvents(want), raw.st, raw.cause, raw.hooks, got.st, got.cause, got.hooks)
		}
	}
}

// applyToModel applies one of the loop's events to the reference model.
func applyToModel(m *stateModel, e event) {
	switch e.kind {
	case evVerified:
		m.apply(modelEvent{kind: meVerified, fresh: e.fresh})
	case evDialFailed:
		m.apply(modelEvent{kind: meFailed, err: e.err, since: m.oks})
	case evEvicted:
		m.apply(modelEvent{kind: meEvicted, err: e.err})
	}
}

func describeEvents(es []event) string {
	var parts []string
	for _, e := range es {
		switch e.kind {
		case evVerified:
			parts = append(parts, fmt.Sprintf("verified(fresh %v)", e.fresh))
		case evAttemptNow:
			parts = append(parts, "attempt-asked")
		case evDialFailed:
			parts = append(parts, fmt.Sprintf("dial-failed(%v)", e.err))
		case evEvicted:
			parts = append(parts, fmt.Sprintf("evicted(%v)", e.err))
		default:
			parts = append(parts, fmt.Sprintf("kind %d", e.kind))
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
