package balancer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golb/golb/internal/testutil"
)

// updatePorts returns n free consecutive ports from this file's own
// sub-range of the package's range (4200-4999).
func updatePorts(t *testing.T, n int) int { return testutil.PortRange(t, 4200, 4999, n) }

// loop sends requests to url from n goroutines until stop is closed and
// counts answers that are not 200 and transport errors.
func loop(c *http.Client, url string, n int, stop <-chan struct{}) (wait func() (ok, bad int64)) {
	var okN, badN atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err != nil {
					badN.Add(1)
					continue
				}
				_ = resp.Body.Close()
				if resp.StatusCode != 200 {
					badN.Add(1)
				} else {
					okN.Add(1)
				}
			}
		})
	}
	return func() (int64, int64) { wg.Wait(); return okN.Load(), badN.Load() }
}

// TestUpdatePolicyUnderLoad: a policy, retries and health-check change
// applies to new requests while requests keep flowing, none failing (run
// with -race: the hot path reads the settings while Update swaps them).
func TestUpdatePolicyUnderLoad(t *testing.T) {
	w1, w2 := newWorker(t, "w1", nil), newWorker(t, "w2", nil)
	b := startBalancer(t, testConfig(), w1, w2)
	c := testClient()
	stop := make(chan struct{})
	wait := loop(c, baseURL(b)+"/x", 4, stop)
	time.Sleep(200 * time.Millisecond)
	for _, p := range []string{PolicyLeastRequests, PolicyP2C, PolicyRandom, PolicyRoundRobin} {
		cfg := b.Config()
		cfg.Policy, cfg.Retries, cfg.RetryOn = p, 2, []string{RetryOn5xx}
		cfg.Health.Path = "/healthz"
		cfg.Health.Interval = 300 * time.Millisecond
		if err := b.Update(context.Background(), cfg); err != nil {
			t.Fatalf("Update to %s: %v", p, err)
		}
		if got := b.Config().Policy; got != p {
			t.Fatalf("policy = %s, want %s", got, p)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	ok, bad := wait()
	t.Logf("%d requests answered 200 across 4 policy changes, %d failed", ok, bad)
	if bad != 0 || ok == 0 {
		t.Fatalf("%d failed, %d ok; want 0 failed", bad, ok)
	}
	if got := b.Config(); got.Retries != 2 || !got.retryOn5xx() || got.Health.Interval != 300*time.Millisecond {
		t.Fatalf("config after updates = %+v", got)
	}
}

// TestUpdateKeepsNameAndRefusesChecksOff: Update keeps what New fixed, and
// refuses to turn active checks off in place.
func TestUpdateKeepsNameAndRefusesChecksOff(t *testing.T) {
	b := startBalancer(t, testConfig(), newWorker(t, "w1", nil))
	cfg := b.Config()
	cfg.Name = "other"
	cfg.Health.Interval = -1
	err := b.Update(context.Background(), cfg)
	if !errors.Is(err, ErrInvalidHealthCheck) {
		t.Fatalf("Update turning checks off: %v, want ErrInvalidHealthCheck", err)
	}
	cfg.Health.Interval = time.Second
	if err := b.Update(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if b.Config().Name != "web" {
		t.Fatalf("name changed to %q", b.Config().Name)
	}
}

// TestUpdateListenersTwoToOne: going from two listeners to one closes the
// second only after its request in flight is answered, and the first
// serves throughout.
func TestUpdateListenersTwoToOne(t *testing.T) {
	g := newGate()
	w := newWorker(t, "w1", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			g.wait()
		}
		_, _ = rw.Write([]byte("ok"))
	}))
	port := updatePorts(t, 2)
	cfg := testConfig()
	cfg.Port, cfg.Listeners = port, 2
	b := startBalancer(t, cfg, w)
	second := "http://127.0.0.1:" + strconv.Itoa(port+1)
	c := testClient()
	slow := make(chan error, 1)
	go func() {
		resp, err := c.Get(second + "/slow")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode != 200 {
				err = errors.New(resp.Status)
			}
		}
		slow <- err
	}()
	waitFor(t, "the slow request in flight", func() bool { return b.InFlight() == 1 })

	stop := make(chan struct{})
	wait := loop(c, baseURL(b)+"/x", 2, stop)
	cfg = b.Config()
	cfg.Listeners = 1
	if err := b.Update(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := b.Addrs(); len(got) != 1 {
		t.Fatalf("addrs after update = %v", got)
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port+1), time.Second); err == nil {
		t.Fatal("the closed listener still accepts")
	}
	g.open()
	if err := <-slow; err != nil {
		t.Fatalf("request in flight on the closed listener: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	ok, bad := wait()
	t.Logf("first listener: %d ok, %d failed while the second closed", ok, bad)
	if bad != 0 {
		t.Fatalf("%d requests failed on the listener that stays", bad)
	}
}

// TestUpdateListenersMove: a new port opens the new listener before the
// old one closes; a port taken by someone else changes nothing.
func TestUpdateListenersMove(t *testing.T) {
	port := updatePorts(t, 3)
	cfg := testConfig()
	cfg.Port = port
	b := startBalancer(t, cfg, newWorker(t, "w1", nil))
	taken, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+2))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg = b.Config()
	cfg.Port = port + 2
	if err := b.Update(context.Background(), cfg); !errors.Is(err, ErrListen) {
		t.Fatalf("Update onto a taken port: %v, want ErrListen", err)
	}
	if got := b.Config().Port; got != port {
		t.Fatalf("port after a failed update = %d, want %d", got, port)
	}
	cfg.Port = port + 1
	if err := b.Update(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, testClient(), "http://127.0.0.1:"+strconv.Itoa(port+1)+"/x"); code != 200 {
		t.Fatalf("new port answered %d", code)
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
		t.Fatal("the old port still accepts")
	}
}

// TestPickFindsALiveWorkerWhileRemovedOnesArePublished: SetBackends marks
// the workers it removes before it publishes the pool without them; a pick
// in between could draw three removed workers in a row and answer 503
// "no healthy workers" with a healthy one in the pool (seen as one failed
// request in a reload's scale-down from 5 to 2 under load).
func TestPickFindsALiveWorkerWhileRemovedOnesArePublished(t *testing.T) {
	b, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	var pool []*backend
	for i := range 4 {
		be := newBackend("w"+strconv.Itoa(i), "127.0.0.1:1")
		be.removed.Store(i < 3) // w3 alone stays
		pool = append(pool, be)
	}
	b.pool.Store(&pool)
	for i := range 8 {
		x := &exchange{}
		be := b.pick(x)
		if be == nil || be.id != "w3" {
			t.Fatalf("pick %d = %v, want w3", i, be)
		}
		be.release()
	}
}

// TestUpdateKeepsListenersInPortOrder pins a bug: Update stored the kept
// listeners before the new ones, while the next Update finds a kept
// listener by its position in port order. Ports p+1..p+2, then p..p+1,
// then one listener at p: golb kept p+1 and closed p.
func TestUpdateKeepsListenersInPortOrder(t *testing.T) {
	port := updatePorts(t, 3)
	w := newWorker(t, "w1", nil)
	cfg := testConfig()
	cfg.Port, cfg.Listeners = port+1, 2
	b := startBalancer(t, cfg, w)
	for _, step := range []struct{ port, listeners int }{{port, 2}, {port, 1}} {
		cfg := b.Config()
		cfg.Port, cfg.Listeners = step.port, step.listeners
		if err := b.Update(context.Background(), cfg); err != nil {
			t.Fatalf("Update to %d×%d: %v", step.port, step.listeners, err)
		}
		var want []string
		for i := range step.listeners {
			want = append(want, fmt.Sprintf("127.0.0.1:%d", step.port+i))
		}
		if got := b.Addrs(); !slices.Equal(got, want) {
			t.Fatalf("after Update to port %d, %d listeners: listening on %v, want %v", step.port, step.listeners, got, want)
		}
		for _, a := range want {
			resp, err := testClient().Get("http://" + a + "/x")
			if err != nil {
				t.Fatalf("GET on %s: %v", a, err)
			}
			_ = resp.Body.Close()
		}
	}
}

// TestUpdateAddsEphemeralListeners pins a bug: with Port 0, growing from
// one listener to two kept the first one twice and bound nothing new.
func TestUpdateAddsEphemeralListeners(t *testing.T) {
	w := newWorker(t, "w1", nil)
	cfg := testConfig()
	cfg.Port, cfg.Listeners = 0, 1
	b := startBalancer(t, cfg, w)
	first := b.Addrs()[0]
	cfg = b.Config()
	cfg.Listeners = 2
	if err := b.Update(context.Background(), cfg); err != nil {
		t.Fatalf("Update: %v", err)
	}
	got := b.Addrs()
	if len(got) != 2 || got[0] != first || got[1] == first {
		t.Fatalf("listening on %v, want %s and a new port", got, first)
	}
}
