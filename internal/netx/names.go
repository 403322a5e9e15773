package netx

import (
	"container/heap"
	"context"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"
)

// Host names are rechecked per name, not per tenant: every connector that
// dials a name subscribes to it, and the process looks the name up once per
// the shortest interval its subscribers ask for (1,000 tenants on one name
// cost one lookup per interval, not 1,000). One runtime timer, armed for the
// earliest due name, drives every recheck; none is armed while no name is
// subscribed, and no goroutine waits between rechecks: the timer's function
// starts the due lookups, each in a goroutine that ends with it. A recheck
// runs whatever the subscriber's state (a tenant that is down must still learn
// where its name points).
//
// The registry holds only mutex-guarded plain data and a timer, so a
// subscriber inside a testing/synctest bubble gets a registry of its own
// (inBubble): a process-wide timer firing into a bubble, or a bubble's timer
// serving other subscribers, is a fatal runtime error.

// NameWatch is one subscription to a host name's rechecks.
type NameWatch struct {
	reg    *nameRegistry
	n      *name
	every  time.Duration
	notify func(current map[netip.Addr]bool)
	// seen: the watch was told an answer (guarded by reg.mu); an unseen one
	// is told the next answer even if the name did not move.
	seen bool
}

// WatchName subscribes notify to host's rechecks through r, at least every
// every (> 0). notify gets every answer that differs from the previous one
// (the first one after subscribing too), as the set of unmapped addresses;
// a failed or empty lookup proves nothing and tells no one. notify runs on a
// goroutine of the registry's, one answer at a time per name, never under a
// lock; it must not block. Stop ends the subscription.
func WatchName(r Resolver, host string, every time.Duration, notify func(current map[netip.Addr]bool)) *NameWatch {
	reg := names
	if InBubble() {
		reg = newNameRegistry()
	}
	return reg.watch(r, host, every, notify)
}

// Stop ends the subscription; the name is forgotten with its last subscriber
// (and the timer stopped with the last name). A notification already running
// may still complete. Stop is idempotent.
func (w *NameWatch) Stop() {
	if w != nil {
		w.reg.unwatch(w)
	}
}

// names is the process-wide registry.
var names = newNameRegistry()

// nameKey identifies a name: the resolver that answers it and the host. A
// resolver that is not a pointer cannot be told apart from another of its
// type (a func's closures), so each watch of it gets a key of its own.
type nameKey struct {
	resolver any
	host     string
}

func resolverKey(r Resolver, private any) any {
	if r != nil && reflect.TypeOf(r).Kind() == reflect.Pointer {
		return r
	}
	return private
}

// name is one host name and its subscribers.
type name struct {
	key      nameKey
	resolver Resolver
	host     string
	subs     map[*NameWatch]struct{}
	unseen   int           // subscribers not yet told an answer (NameWatch.seen)
	every    time.Duration // min of the subscribers'
	due      time.Time
	index    int  // in the due heap; -1 while a lookup runs or once forgotten
	looking  bool // a recheck's lookup is running
	last     []netip.Addr
	answered bool // last holds an answer
	// moved: a dial's lookup saw an answer other than last, so the next
	// recheck tells every subscriber even if it sees that same answer.
	moved bool
}

type nameRegistry struct {
	mu    sync.Mutex
	names map[nameKey]*name
	due   dueHeap
	timer *time.Timer // made on first use; stopped while due is empty
	armed time.Time   // when timer fires; zero when stopped

	now       func() time.Time
	afterFunc func(d time.Duration, f func()) *time.Timer

	// flights are the lookups in progress, joined by identical ones.
	flights map[flightKey]*flight
}

func newNameRegistry() *nameRegistry {
	return &nameRegistry{
		names: make(map[nameKey]*name), flights: make(map[flightKey]*flight),
		now: time.Now, afterFunc: time.AfterFunc,
	}
}

// dueGrain rounds due times up, so names subscribed at nearly the same time
// are looked up by one timer firing.
const dueGrain = 100 * time.Millisecond

func (g *nameRegistry) watch(r Resolver, host string, every time.Duration, notify func(map[netip.Addr]bool)) *NameWatch {
	w := &NameWatch{reg: g, every: every, notify: notify}
	key := nameKey{resolver: resolverKey(r, w), host: host}
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.names[key]
	if n == nil {
		n = &name{key: key, resolver: r, host: host, subs: make(map[*NameWatch]struct{}), every: every, index: -1}
		g.names[key] = n
	}
	w.n = n
	n.subs[w] = struct{}{}
	n.unseen++
	n.every = min(n.every, every)
	due := g.now().Add(every).Truncate(dueGrain).Add(dueGrain)
	switch {
	case n.looking:
		// rescheduled when the lookup ends, with the new interval
	case n.index < 0:
		n.due = due
		heap.Push(&g.due, n)
	case due.Before(n.due):
		n.due = due
		heap.Fix(&g.due, n.index)
	}
	g.arm()
	return w
}

func (g *nameRegistry) unwatch(w *NameWatch) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := w.n
	if _, ok := n.subs[w]; !ok {
		return
	}
	delete(n.subs, w)
	if !w.seen {
		n.unseen--
	}
	if len(n.subs) == 0 {
		delete(g.names, n.key)
		if n.index >= 0 {
			heap.Remove(&g.due, n.index)
		}
		g.arm()
		return
	}
	if w.every == n.every {
		n.every = 0
		for s := range n.subs {
			if n.every == 0 || s.every < n.every {
				n.every = s.every
			}
		}
	}
}

// arm sets the timer for the earliest due name, or stops it. The caller
// holds g.mu.
func (g *nameRegistry) arm() {
	if len(g.due) == 0 {
		if g.timer != nil && !g.armed.IsZero() {
			g.timer.Stop()
			g.armed = time.Time{}
		}
		return
	}
	at := g.due[0].due
	if at.Equal(g.armed) {
		return
	}
	d := at.Sub(g.now())
	if g.timer == nil {
		g.timer = g.afterFunc(d, g.fire)
	} else {
		g.timer.Reset(d)
	}
	g.armed = at
}

// fire starts a lookup for each due name and re-arms the timer.
func (g *nameRegistry) fire() {
	g.mu.Lock()
	now := g.now()
	var due []*name
	var timeouts []time.Duration
	for len(g.due) > 0 && !g.due[0].due.After(now) {
		n := heap.Pop(&g.due).(*name)
		n.looking = true
		due = append(due, n)
		timeouts = append(timeouts, min(n.every, recheckTimeout))
	}
	g.armed = time.Time{}
	g.arm()
	g.mu.Unlock()
	for i, n := range due {
		go g.recheck(n, now, timeouts[i])
	}
}

// recheckTimeout bounds one recheck's lookup.
const recheckTimeout = 2 * time.Second

// recheck looks n up, tells the subscribers that must hear the answer, and
// schedules n's next recheck (if it still has subscribers).
func (g *nameRegistry) recheck(n *name, began time.Time, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	ips, err := g.lookup(ctx, n.resolver, n.key.resolver, "ip", n.host)
	cancel()
	var tell []*NameWatch
	var current map[netip.Addr]bool
	g.mu.Lock()
	n.looking = false
	if err == nil && len(ips) > 0 {
		answer := sortedAddrs(ips)
		changed := !n.answered || n.moved || !slices.Equal(answer, n.last)
		n.last, n.answered, n.moved = answer, true, false
		// Not a look at every subscriber each time: 1,000 tenants' watches
		// are 1,000 cold cache lines per recheck.
		if changed || n.unseen > 0 {
			for w := range n.subs {
				if changed || !w.seen {
					w.seen = true
					tell = append(tell, w)
				}
			}
			n.unseen = 0
		}
		current = make(map[netip.Addr]bool, len(answer))
		for _, ip := range answer {
			current[ip] = true
		}
	}
	if g.names[n.key] == n { // not forgotten meanwhile
		next := began.Add(n.every)
		if now := g.now(); next.Before(now) {
			next = now.Add(n.every) // the lookup took longer than the interval
		}
		n.due = next.Truncate(dueGrain).Add(dueGrain)
		heap.Push(&g.due, n)
		g.arm()
	}
	g.mu.Unlock()
	for _, w := range tell {
		w.notify(current)
	}
}

// sortedAddrs returns ips unmapped, deduplicated and sorted: an answer's
// order is no news.
func sortedAddrs(ips []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		if ip = ip.Unmap(); ip.IsValid() {
			out = append(out, ip)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// observe records a dial's answer for host ("ip" lookups only): one other
// than the last recheck's means the name may have moved and back between two
// rechecks, so the next recheck tells everyone.
func (g *nameRegistry) observe(key any, host string, ips []netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.names[nameKey{resolver: key, host: host}]
	if n != nil && n.answered && !slices.Equal(sortedAddrs(ips), n.last) {
		n.moved = true
	}
}

// A flight is one lookup that identical lookups join (no cache: a lookup
// begun after it ended starts another).
type flightKey struct {
	resolver any
	network  string
	host     string
}

type flight struct {
	done chan struct{}
	ips  []netip.Addr
	err  error
	// ended: the leader's context ended before its lookup returned.
	ended bool
}

// lookup resolves host through r, joining an identical lookup in flight.
// key is r's identity (resolverKey); nil resolves alone. A joiner whose
// leader's context ended (not its own) looks up again.
func (g *nameRegistry) lookup(ctx context.Context, r Resolver, key any, network, host string) ([]netip.Addr, error) {
	if key == nil {
		return r.LookupNetIP(ctx, network, host)
	}
	fk := flightKey{resolver: key, network: network, host: host}
	for {
		g.mu.Lock()
		f := g.flights[fk]
		if f == nil {
			f = &flight{done: make(chan struct{})}
			g.flights[fk] = f
			g.mu.Unlock()
			f.ips, f.err = r.LookupNetIP(ctx, network, host)
			f.ended = f.err != nil && ctx.Err() != nil
			g.mu.Lock()
			delete(g.flights, fk)
			g.mu.Unlock()
			close(f.done)
			return f.ips, f.err
		}
		g.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.ended && ctx.Err() == nil {
			continue // the leader's context ended, not ours
		}
		return slices.Clone(f.ips), f.err
	}
}

// lookupNetIP is the dialer's lookup: joined with an identical one in flight
// (rechecks included), outside a synctest bubble.
func lookupNetIP(ctx context.Context, r Resolver, network, host string) ([]netip.Addr, error) {
	if InBubble() {
		return r.LookupNetIP(ctx, network, host)
	}
	key := resolverKey(r, nil)
	ips, err := names.lookup(ctx, r, key, network, host)
	if err == nil && key != nil && network == "ip" {
		names.observe(key, host, ips)
	}
	return ips, err
}

// dueHeap orders names by due time.
type dueHeap []*name

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *dueHeap) Push(x any) {
	n := x.(*name)
	n.index = len(*h)
	*h = append(*h, n)
}
func (h *dueHeap) Pop() any {
	old := *h
	n := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	n.index = -1
	return n
}
