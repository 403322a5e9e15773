package pgfast

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hookRecorder records the states a state hook is called with and whether
// two calls ever overlapped.
type hookRecorder struct {
	mu      sync.Mutex
	seq     []State
	running atomic.Int32
	overlap atomic.Bool
}

func (h *hookRecorder) hook(st State, _ error) {
	if h.running.Add(1) > 1 {
		h.overlap.Store(true)
	}
	runtime.Gosched()
	h.mu.Lock()
	h.seq = append(h.seq, st)
	h.mu.Unlock()
	h.running.Add(-1)
}

func (h *hookRecorder) states() []State {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]State(nil), h.seq...)
}

// TestStateHookOrderUnderConcurrentTransitions races many evictions (Down,
// reported from query goroutines) against probes that succeed (Ready): the
// hook is never called twice at once, every call is a change (no Ready→Down
// delivered as Down→Ready, which would show as a repeated state), and the
// last call says the state the connector ends in.
func TestStateHookOrderUnderConcurrentTransitions(t *testing.T) {
	fb := &fakeBackend{}
	h := &hookRecorder{}
	// A logger that takes its time widens the windows in which transitions
	// overlap.
	slow := slog.New(slog.NewTextHandler(slowWriter{}, nil))
	c := newFakeConnector(t, fb, options{stateHook: h.hook, logger: slow})
	defer c.Close()
	waitFor(t, c, StateReady, 5*time.Second)

	addr := netip.MustParseAddrPort("127.0.0.1:1")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 300; i++ {
				c.onEvict(addr, errors.New("connection timed out"), true)
				time.Sleep(time.Duration(rand.N(1000)) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	// The probes bring it back; wait until the hook has said so.
	deadline := time.Now().Add(5 * time.Second)
	for {
		seq := h.states()
		if c.State() == StateReady && len(seq) > 0 && seq[len(seq)-1] == StateReady {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %s, hook's last %v", c.State(), seq[max(0, len(seq)-3):])
		}
		time.Sleep(5 * time.Millisecond)
	}
	if h.overlap.Load() {
		t.Error("the state hook ran on two goroutines at once")
	}
	seq := h.states()
	if seq[0] != StateReady {
		t.Errorf("first hook call %s, want ready", seq[0])
	}
	for i := 1; i < len(seq); i++ {
		if seq[i] == seq[i-1] {
			t.Fatalf("hook called with %s twice in a row at %d of %d: calls out of order", seq[i], i, len(seq))
		}
	}
	if int64(len(seq)) != c.Stats().StateChanges {
		t.Errorf("hook called %d times for %d state changes", len(seq), c.Stats().StateChanges)
	}
	t.Logf("%d state changes", len(seq))
}

// TestStateHookMayCloseTheConnector: a hook that closes the connector when it
// goes Down returns, and the connector's goroutines end.
func TestStateHookMayCloseTheConnector(t *testing.T) {
	fb := &fakeBackend{}
	fb.set(func(context.Context) error { return netDown })
	var c *Connector
	var ready = make(chan struct{})
	returned := make(chan struct{})
	c = newFakeConnector(t, fb, options{stateHook: func(st State, _ error) {
		<-ready
		if st == StateDown {
			c.Close()
			close(returned)
		}
	}})
	close(ready)
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Close called from the state hook did not return")
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the connector's goroutine did not end after Close from the hook")
	}
	if st := c.State(); st != StateClosed {
		t.Errorf("state %s after Close, want closed", st)
	}
	if _, err := c.Connect(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close: %v, want ErrClosed", err)
	}
}

// slowWriter takes up to 2 ms per write.
type slowWriter struct{}

func (slowWriter) Write(p []byte) (int, error) {
	time.Sleep(time.Duration(rand.N(2000)) * time.Microsecond)
	return len(p), nil
}

// TestEvictionsNeverWaitForTheStateHook: an eviction is reported from a
// query's read path; it must return at once even while the state hook is
// slow (here: blocked until the test lets it go).
func TestEvictionsNeverWaitForTheStateHook(t *testing.T) {
	fb := &fakeBackend{}
	release := make(chan struct{})
	var once sync.Once
	let := func() { once.Do(func() { close(release) }) }
	defer let()
	c := newFakeConnector(t, fb, options{stateHook: func(st State, _ error) {
		if st == StateDown {
			<-release
		}
	}})
	defer c.Close()
	waitFor(t, c, StateReady, 5*time.Second)
	fb.set(func(context.Context) error { return netDown })

	returned := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		for i := 0; i < 1000; i++ {
			c.onEvict(netip.MustParseAddrPort("127.0.0.1:1"), errors.New("connection timed out"), true)
		}
		returned <- time.Since(start)
	}()
	select {
	case took := <-returned:
		if took > time.Second {
			t.Errorf("1000 evictions took %s while the hook was blocked", took)
		}
	case <-time.After(5 * time.Second):
		let()
		t.Fatal("an eviction waited for the state hook")
	}
	let()
	waitFor(t, c, StateDown, 5*time.Second)
}
