package main

import (
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
