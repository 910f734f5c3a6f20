package balancer

import (
	"errors"
	"fmt"
	"math"
	"testing"
)

func testPool(n int) []*backend {
	pool := make([]*backend, n)
	for i := range pool {
		pool[i] = newBackend(fmt.Sprintf("w%d", i), fmt.Sprintf("127.0.0.1:%d", 6000+i))
	}
	return pool
}

func TestNewSelectorUnknownPolicy(t *testing.T) {
	if _, err := newSelector("weighted"); !errors.Is(err, ErrUnknownPolicy) {
		t.Fatalf("newSelector(weighted) = %v, want ErrUnknownPolicy", err)
	}
	for _, p := range []string{PolicyRoundRobin, PolicyLeastRequests, PolicyRandom, PolicyP2C} {
		s, err := newSelector(p)
		if err != nil {
			t.Fatalf("newSelector(%s): %v", p, err)
		}
		if got := s.Select(nil); got != nil {
			t.Errorf("%s: Select(empty) = %v, want nil", p, got.id)
		}
		one := testPool(1)
		if got := s.Select(one); got != one[0] {
			t.Errorf("%s: Select(one) did not return the only backend", p)
		}
	}
}

func TestRoundRobinSelectorExact(t *testing.T) {
	s, _ := newSelector(PolicyRoundRobin)
	pool := testPool(3)
	counts := map[*backend]int{}
	for range 10000 {
		counts[s.Select(pool)]++
	}
	for _, be := range pool {
		if n := counts[be]; n != 3333 && n != 3334 {
			t.Errorf("%s got %d picks, want 3333 or 3334", be.id, n)
		}
	}
}

func TestLeastRequestsSelectorPicksMinimum(t *testing.T) {
	s, _ := newSelector(PolicyLeastRequests)
	pool := testPool(4)
	pool[0].inflight.Store(3)
	pool[1].inflight.Store(1)
	pool[2].inflight.Store(5)
	pool[3].inflight.Store(1)
	seen := map[*backend]int{}
	for range 1000 {
		seen[s.Select(pool)]++
	}
	if seen[pool[0]]+seen[pool[2]] != 0 {
		t.Fatalf("picked a busier backend: %v", seen)
	}
	// Ties are broken at random: both tied backends are used.
	if seen[pool[1]] < 300 || seen[pool[3]] < 300 {
		t.Fatalf("ties not spread: w1=%d w3=%d of 1000", seen[pool[1]], seen[pool[3]])
	}
}

func TestP2CSelectorAvoidsBusierOfTwo(t *testing.T) {
	s, _ := newSelector(PolicyP2C)
	pool := testPool(2)
	pool[0].inflight.Store(10)
	for range 1000 {
		if got := s.Select(pool); got != pool[1] {
			t.Fatalf("p2c over two backends picked the busier one")
		}
	}
}

// chiSquare returns the chi-square statistic of counts against a uniform spread.
func chiSquare(counts []int) float64 {
	total := 0
	for _, c := range counts {
		total += c
	}
	exp := float64(total) / float64(len(counts))
	var x2 float64
	for _, c := range counts {
		d := float64(c) - exp
		x2 += d * d / exp
	}
	return x2
}

func TestRandomSelectorsSpread(t *testing.T) {
	for _, p := range []string{PolicyRandom, PolicyP2C, PolicyLeastRequests} {
		t.Run(p, func(t *testing.T) {
			s, _ := newSelector(p)
			pool := testPool(5)
			idx := map[*backend]int{}
			for i, be := range pool {
				idx[be] = i
			}
			counts := make([]int, len(pool))
			for range 10000 {
				counts[idx[s.Select(pool)]]++
			}
			// 4 degrees of freedom: P(X² > 30) is below 1e-5.
			if x2 := chiSquare(counts); x2 > 30 || math.IsNaN(x2) {
				t.Fatalf("counts %v: chi-square %.1f > 30", counts, x2)
			}
			t.Logf("counts %v", counts)
		})
	}
}

func BenchmarkSelect(b *testing.B) {
	for _, p := range []string{PolicyRoundRobin, PolicyLeastRequests, PolicyRandom, PolicyP2C} {
		for _, n := range []int{3, 32} {
			b.Run(fmt.Sprintf("%s/%d", p, n), func(b *testing.B) {
				s, _ := newSelector(p)
				pool := testPool(n)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if s.Select(pool) == nil {
							b.Fatal("nil pick")
						}
					}
				})
			})
		}
	}
}
