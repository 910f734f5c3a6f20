package core

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/balancer"
)

// balancerBlock is a test config with one group and one balancer "web" in
// front of it, with extra attributes in the balancer block.
func balancerBlock(t *testing.T, extra string) string {
	return header(t.TempDir(), "") + groupHCL("g", 1, freePorts(t, 1), "1ms") +
		fmt.Sprintf("balancer \"web\" {\n  group = \"g\"\n  port = %d\n%s}\n", freePorts(t, 1), extra)
}

// TestGolbZerosReachTheBalancerAsNone: golb's config and the balancer read
// 0 differently (golb's retries = 0, drain_timeout = "0s" and body_min_rate
// = 0 turn the feature off, the balancer's 0 meant its default), so core
// flipped signs on the way (0 to -1, 0 to 1ns). Both now agree that 0 means
// none, and every value is handed on as it is: this pins both ends.
func TestGolbZerosReachTheBalancerAsNone(t *testing.T) {
	for _, tc := range []struct {
		name, extra      string
		retries, minRate int
		drain            time.Duration
	}{
		{"defaults", "", 1, 1024, 10 * time.Second},
		{"zeros", "  retries = 0\n  drain_timeout = \"0s\"\n  body_min_rate = 0\n", 0, 0, 0},
		{"values", "  retries = 3\n  drain_timeout = \"2s\"\n  body_min_rate = 10\n", 3, 10, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parseConfig(t, balancerBlock(t, tc.extra))
			bc := balancerConfig(cfg.Balancers[0], cfg.Group("g"))
			if bc.Retries != tc.retries || bc.BodyMinRate != tc.minRate || bc.DrainTimeout != tc.drain {
				t.Fatalf("balancer config: retries %d, body_min_rate %d, drain %v; want %d, %d, %v",
					bc.Retries, bc.BodyMinRate, bc.DrainTimeout, tc.retries, tc.minRate, tc.drain)
			}
			if err := bc.Validate(); err != nil {
				t.Fatalf("the balancer refuses golb's values: %v", err)
			}
		})
	}
	// The balancer's own defaults are golb's.
	d := balancer.DefaultConfig()
	if d.Retries != 1 || d.BodyMinRate != 1024 || d.DrainTimeout != 10*time.Second {
		t.Errorf("balancer.DefaultConfig: retries %d, body min rate %d, drain %v; want golb's 1, 1024, 10s", d.Retries, d.BodyMinRate, d.DrainTimeout)
	}
}

// TestRetriesZeroTurnsRetriesOff: a balancer built from `retries = 0` must
// not retry. A GET whose connection a worker breaks before answering is
// retried on the other worker with the default retries, and answered 502
// with retries = 0: the balancer reads golb's 0 as none, not as its default.
func TestRetriesZeroTurnsRetriesOff(t *testing.T) {
	healthy := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				return
			}
			h(w, r)
		}
	}
	breaks := httptest.NewServer(healthy(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // no answer at all
		}
	}))
	defer breaks.Close()
	answers := httptest.NewServer(healthy(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer answers.Close()

	for _, tc := range []struct {
		name, extra string
		wantFailed  bool
	}{
		{"default retries", "", false},
		{"retries = 0", "  retries = 0\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parseConfig(t, balancerBlock(t, tc.extra))
			bc := balancerConfig(cfg.Balancers[0], cfg.Group("g"))
			bc.Port = 0
			b, err := balancer.New(bc)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer b.Shutdown(context.Background())
			b.SetBackends([]balancer.Backend{
				{ID: "breaks", Address: strings.TrimPrefix(breaks.URL, "http://")},
				{ID: "answers", Address: strings.TrimPrefix(answers.URL, "http://")},
			})
			waitUntil(t, "both workers healthy", func() bool {
				n := 0
				for _, s := range b.Stats() {
					if s.Healthy {
						n++
					}
				}
				return n == 2
			})
			// Round robin: of two requests, one goes to the breaking worker first.
			failed := 0
			for range 2 {
				resp, err := http.Get("http://" + b.Addrs()[0] + "/api/v1/hello")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed++
				}
			}
			if got := failed > 0; got != tc.wantFailed {
				t.Fatalf("%d of 2 requests failed; want a failure: %v", failed, tc.wantFailed)
			}
		})
	}
}
