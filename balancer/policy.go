package balancer

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
)

// selector picks one backend from pool, an immutable slice that holds only
// candidates (healthy, not ejected, not removed). It returns nil only for an
// empty pool. Implementations keep their state in atomics: Select runs on
// every request from many goroutines and takes no lock.
type selector interface {
	Select(pool []*backend) *backend
}

// policies are the selection policies by name: the one list that
// Validate, newSelector and golb's config (through Policies) read.
var policies = []struct {
	name string
	new  func() selector
}{
	{PolicyRoundRobin, func() selector { return new(roundRobin) }},
	{PolicyLeastRequests, func() selector { return leastRequests{} }},
	{PolicyRandom, func() selector { return randomChoice{} }},
	{PolicyP2C, func() selector { return powerOfTwo{} }},
}

// Policies returns the names Config.Policy accepts.
func Policies() []string {
	names := make([]string, len(policies))
	for i, p := range policies {
		names[i] = p.name
	}
	return names
}

// newSelector returns the policy called name.
func newSelector(name string) (selector, error) {
	for _, p := range policies {
		if p.name == name {
			return p.new(), nil
		}
	}
	return nil, fmt.Errorf("%w: %q (known: %s)", ErrUnknownPolicy, name, strings.Join(Policies(), ", "))
}

// roundRobin hands out the pool in order. One shared counter makes it exact
// across all listeners: n sequential requests over k backends give each
// floor(n/k) or ceil(n/k).
type roundRobin struct {
	next atomic.Uint64
}

func (s *roundRobin) Select(pool []*backend) *backend {
	if len(pool) == 0 {
		return nil
	}
	i := s.next.Add(1) - 1
	return pool[i%uint64(len(pool))]
}

// leastRequests picks the backend with the fewest in-flight requests; ties
// are broken uniformly at random (reservoir sampling over the tied ones), so
// an idle pool is still spread evenly.
type leastRequests struct{}

func (leastRequests) Select(pool []*backend) *backend {
	var best *backend
	var least int64
	ties := 0
	for _, be := range pool {
		n := be.inflight.Load()
		switch {
		case best == nil || n < least:
			best, least, ties = be, n, 1
		case n == least:
			ties++
			if rand.IntN(ties) == 0 {
				best = be
			}
		}
	}
	return best
}

// randomChoice picks a backend uniformly at random.
type randomChoice struct{}

func (randomChoice) Select(pool []*backend) *backend {
	switch len(pool) {
	case 0:
		return nil
	case 1:
		return pool[0]
	}
	return pool[rand.IntN(len(pool))]
}

// powerOfTwo samples two distinct backends at random and keeps the one with
// fewer in-flight requests ("the power of two choices"): nearly the balance
// of least_requests at the cost of two loads instead of a scan.
type powerOfTwo struct{}

func (powerOfTwo) Select(pool []*backend) *backend {
	n := len(pool)
	switch n {
	case 0:
		return nil
	case 1:
		return pool[0]
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := pool[i], pool[j]
	if b.inflight.Load() < a.inflight.Load() {
		return b
	}
	return a
}

var (
	_ selector = (*roundRobin)(nil)
	_ selector = leastRequests{}
	_ selector = randomChoice{}
	_ selector = powerOfTwo{}
)
