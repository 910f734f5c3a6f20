package main

import (
	"math"
	"slices"
	"testing"
)

// TestRepOrderVariesNeighbours pins the fix for a harness bias: a plain
// rotation ran golb right after Caddy in every rep. Each rep must run every
// path once, and over n-1 reps of a prime n paths no path may always follow
// the same one, nor always run last.
func TestRepOrderVariesNeighbours(t *testing.T) {
	for n := 1; n <= 7; n++ {
		follows := map[[2]int]int{}
		last := map[int]int{}
		for rep := range 6 {
			order := repOrder(n, rep)
			sorted := slices.Sorted(slices.Values(order))
			for i, v := range sorted {
				if v != i {
					t.Fatalf("n=%d rep %d: order %v is not a permutation of 0..%d", n, rep, order, n-1)
				}
			}
			last[order[n-1]]++
			for i := 1; i < n; i++ {
				follows[[2]int{order[i-1], order[i]}]++
			}
		}
		if n == 5 {
			// golb (4) after caddy (3): a rotation gave it 6 times out of 6.
			if c := follows[[2]int{3, 4}]; c > 2 {
				t.Errorf("n=5: golb ran right after caddy in %d of 6 reps", c)
			}
			if c := last[4]; c > 2 {
				t.Errorf("n=5: golb ran last in %d of 6 reps", c)
			}
		}
	}
	if got := repOrder(5, 0); !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
		t.Errorf("rep 1 must keep the canonical order, got %v", got)
	}
}

// TestMergeSlices: a path's slices add up to one result: rps over the
// slices' whole time (not the mean of their rps), CPU per request weighted
// by requests, the highest RSS, the median latencies; direct's NaNs stay
// NaN.
func TestMergeSlices(t *testing.T) {
	nan := math.NaN()
	got := mergeSlices([]result{
		{rps: 1000, requests: 2000, p50: 1, p99: 9, errors: 1, errDetail: "read 1", rssMiB: 30, cpuPerReq: 10},
		{rps: 3000, requests: 6000, p50: 2, p99: 5, rssMiB: 34, cpuPerReq: 20},
		{rps: 2000, requests: 4000, p50: 3, p99: 7, rssMiB: 32, cpuPerReq: 15},
	})
	want := result{rps: 12000.0 / 6, requests: 12000, p50: 2, p99: 7, errors: 1, errDetail: "read 1", rssMiB: 34,
		cpuPerReq: (2000*10 + 6000*20 + 4000*15) / 12000.0}
	if got != want {
		t.Errorf("mergeSlices = %+v, want %+v", got, want)
	}
	direct := mergeSlices([]result{{rps: 10, requests: 20, p50: 1, p99: 2, rssMiB: nan, cpuPerReq: nan},
		{rps: 10, requests: 20, p50: 1, p99: 2, rssMiB: nan, cpuPerReq: nan}})
	if !math.IsNaN(direct.rssMiB) || !math.IsNaN(direct.cpuPerReq) || direct.rps != 10 {
		t.Errorf("direct's slices merged to %+v, want rps 10 and no RSS or CPU", direct)
	}
}
