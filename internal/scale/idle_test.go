//go:build linux

package main

import (
	"slices"
	"testing"
)

// TestCheckpoints: --idle N takes the footprint at 1k, 2k, 5k, 10k, ...
// below N, then at N.
func TestCheckpoints(t *testing.T) {
	for n, want := range map[int][]int{
		30:    {30},
		1000:  {1000},
		2500:  {1000, 2000, 2500},
		10000: {1000, 2000, 5000, 10000},
		12000: {1000, 2000, 5000, 10000, 12000},
	} {
		if got := checkpoints(n); !slices.Equal(got, want) {
			t.Errorf("checkpoints(%d) = %v, want %v", n, got, want)
		}
	}
}
