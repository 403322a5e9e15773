//go:build linux

package pgfast

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/testkit"
)

// TestKernelAcceptsExactlyTheBounds checks the ranges pgfast enforces
// against this kernel: the largest value of each socket option pgfast
// accepts is set, one more is refused (EINVAL). If a kernel raises a limit
// this test says so; a kernel that lowers one is caught at dial time
// (TestSetsockoptRefusalIsPermanent).
func TestKernelAcceptsExactlyTheBounds(t *testing.T) {
	port := testkit.Listener(t, "tcp", "127.0.0.1:0")
	base := netx.Settings{Keepalives: true, ConnectTimeout: 5 * time.Second}
	cases := []struct {
		key string
		set func(*netx.Settings, int64)
	}{
		{"keepalives_idle", func(s *netx.Settings, n int64) { s.KeepalivesIdle = time.Duration(n) * time.Second }},
		{"keepalives_interval", func(s *netx.Settings, n int64) { s.KeepalivesInterval = time.Duration(n) * time.Second }},
		{"keepalives_count", func(s *netx.Settings, n int64) { s.KeepalivesCount = int(n) }},
		{"tcp_user_timeout", func(s *netx.Settings, n int64) { s.TCPUserTimeout = time.Duration(n) * time.Millisecond }},
	}
	for _, tc := range cases {
		var k numericKey
		for _, nk := range numericKeys {
			if nk.name == tc.key {
				k = nk
			}
		}
		if k.name == "" {
			t.Fatalf("%s is not a numeric key", tc.key)
		}
		for _, n := range []int64{k.max, k.max + 1} {
			s := base
			tc.set(&s, n)
			conn, err := netx.NewDialer(s, nil).DialContext(context.Background(), "tcp", "127.0.0.1:"+port)
			if conn != nil {
				conn.Close()
			}
			if n == k.max && err != nil {
				t.Errorf("%s=%d (pgfast's maximum): %v", tc.key, n, err)
			}
			// tcp_user_timeout's maximum is the int's: one more cannot be
			// given to setsockopt at all (pgfast's conversion clamps it).
			if n > k.max && tc.key != "tcp_user_timeout" && !errors.Is(err, syscall.EINVAL) {
				t.Errorf("%s=%d: %v, want the kernel's EINVAL (has the limit moved?)", tc.key, n, err)
			}
		}
	}
}
