package testutil

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load is an in-test load generator for golb's hello endpoint: GETs at a
// steady rate over keep-alive connections, each answer's worker id counted,
// every failure kept.
type Load struct {
	// OK counts the 200s; Simulated the 500s of a worker's own failure_rate
	// ("simulated failure"), which are the worker's answers, not golb's.
	OK, Simulated atomic.Int64

	mu     sync.Mutex
	byID   map[string]int
	errs   []string
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	client *http.Client
}

// StartLoad sends rps requests a second, to each of urls in turn, until
// Halt or Finish.
func StartLoad(urls []string, rps int) *Load {
	l := &Load{byID: map[string]int{}, stop: make(chan struct{}),
		client: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	tick := time.NewTicker(time.Second / time.Duration(rps))
	l.wg.Go(func() {
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			url := urls[i%len(urls)]
			l.wg.Go(func() { l.one(url) })
		}
	})
	return l
}

func (l *Load) one(url string) {
	resp, err := l.client.Get(url)
	if err != nil {
		l.fail(err.Error())
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode == 500 && strings.Contains(string(body), "simulated failure") {
		l.Simulated.Add(1)
		return
	}
	var msg struct{ Message string }
	if err != nil || resp.StatusCode != 200 || json.Unmarshal(body, &msg) != nil {
		l.fail(fmt.Sprintf("%s: %d %s %v", url, resp.StatusCode, strings.TrimSpace(string(body)), err))
		return
	}
	l.OK.Add(1)
	l.mu.Lock()
	l.byID[strings.TrimPrefix(msg.Message, "hello from container: ")]++
	l.mu.Unlock()
}

func (l *Load) fail(s string) {
	l.mu.Lock()
	l.errs = append(l.errs, s)
	l.mu.Unlock()
}

// Halt stops sending; the requests in flight go on.
func (l *Load) Halt() { l.once.Do(func() { close(l.stop) }) }

// Finish stops sending, waits for the requests in flight and returns the
// failures.
func (l *Load) Finish() []string {
	l.Halt()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs
}

// IDs returns the worker ids that answered so far, with their counts.
func (l *Load) IDs() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.byID))
	for k, v := range l.byID {
		out[k] = v
	}
	return out
}

// AnsweredBy reports whether a worker not in old answered.
func (l *Load) AnsweredBy(old map[string]bool) bool {
	for id := range l.IDs() {
		if !old[id] {
			return true
		}
	}
	return false
}
