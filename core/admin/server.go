package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Server keeps the dashboard's history and event log and streams them. Run
// drives it; its handlers are added to a mux with Register.
type Server struct {
	views Views
	opts  Options

	mu      sync.Mutex
	hist    *ring
	events  []Event            // oldest first, at most opts.Events
	byGroup map[string][]Event // the groups' lifecycle events, oldest first, at most opts.GroupEvents each (group_events.go)
	tracker *tracker
	last    *frame        // the newest snapshot, for a page that connects
	subs    map[*sub]bool // connected streams
	lastBal map[string]Balancer
	lastAt  time.Time
}

// frame is one Server-Sent Event, encoded once for every stream.
type frame struct {
	event string
	data  []byte
}

// sub is one connected stream. Frames that a slow reader leaves in ch past
// its capacity end the stream; the page's EventSource reconnects and gets
// the history again.
type sub struct {
	ch     chan *frame
	closed bool
}

// snapshot is the stream's "snapshot" event, once a second.
type snapshot struct {
	T         int64         `json:"t"`
	Point     Point         `json:"point"`
	Balancers []balancerRow `json:"balancers"`
	Groups    []groupRow    `json:"groups"`
	Workers   []Worker      `json:"workers"`
	Drivers   []Driver      `json:"drivers"`
}

type balancerRow struct {
	Balancer
	Requests uint64 `json:"requests"` // attempts since golb started
}

type groupRow struct {
	Group
	Running  int `json:"running"`
	Healthy  int `json:"healthy"`
	Draining int `json:"draining"`
	Pending  int `json:"pending"`
}

// history is the stream's first event: the charts' past and the event log.
type history struct {
	StepMS int64   `json:"step_ms"`
	Points []Point `json:"points"`
	Events []Event `json:"events"`
}

// New returns a Server reading views. Call Run to start its history.
func New(views Views, opts Options) *Server {
	opts = opts.withDefaults()
	return &Server{
		views:   views,
		opts:    opts,
		hist:    newRing(opts.History),
		tracker: newTracker(opts.GoneFor),
		byGroup: map[string][]Event{},
		subs:    map[*sub]bool{},
	}
}

// Run samples the state every Interval into the history and the streams,
// and turns each change of the state store into events at once, until ctx
// ends. A change is read as soon as it wakes the watch: a worker's exit
// lasts only while its driver cleans it up, then it is deleted.
func (s *Server) Run(ctx context.Context) {
	next := time.Now()
	for ctx.Err() == nil {
		ws := memdb.NewWatchSet()
		st := s.views.State(ws)
		now := time.Now()
		s.observe(st, now)
		if !now.Before(next) {
			s.sample(st, now)
			next = next.Add(s.opts.Interval)
			if next.Before(now) {
				next = now.Add(s.opts.Interval)
			}
		}
		wctx, cancel := context.WithDeadline(ctx, next)
		_ = ws.WatchCtx(wctx)
		cancel()
	}
	s.mu.Lock()
	for sb := range s.subs {
		s.dropLocked(sb)
	}
	s.mu.Unlock()
}

// observe logs and streams what changed since the last State.
func (s *Server) observe(st State, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs := s.tracker.observe(st, now)
	s.keepGroupEventsLocked(st, evs)
	for _, e := range evs {
		s.events = append(s.events, e)
		if len(s.events) > s.opts.Events {
			s.events = append(s.events[:0:0], s.events[len(s.events)-s.opts.Events:]...)
		}
		s.opts.Logger.Debug("dashboard event", "kind", e.Kind, "text", e.Text)
		if len(s.subs) > 0 {
			s.broadcastLocked("event", e)
		}
	}
}

// sample adds one point to the history and streams a snapshot.
func (s *Server) sample(st State, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	secs := now.Sub(s.lastAt).Seconds()
	p := Point{T: now.UnixMilli(), B: map[string][balFields]float64{}, G: map[string][grpFields]int{}}
	snap := snapshot{T: p.T, Drivers: st.Drivers, Workers: s.tracker.rows(st, now)}
	bal := map[string]Balancer{}
	for _, b := range st.Balancers {
		bal[b.Name] = b
		prev, ok := s.lastBal[b.Name]
		if !ok {
			prev = Balancer{Classes: b.Classes, Buckets: b.Buckets, Retries: b.Retries, Unavailable: b.Unavailable}
		}
		p.B[b.Name] = balancerPoint(prev, b, secs)
		row := balancerRow{Balancer: b}
		for _, n := range b.Classes {
			row.Requests += n
		}
		snap.Balancers = append(snap.Balancers, row)
	}
	s.lastBal, s.lastAt = bal, now
	for _, g := range st.Groups {
		c := groupPoint(g, st.Workers)
		p.G[g.Name] = c
		row := groupRow{Group: g, Running: c[GrpRunning], Healthy: c[GrpHealthy], Draining: c[GrpDraining]}
		for _, w := range st.Workers {
			if w.Group == g.Name && w.Status == "pending" {
				row.Pending++
			}
		}
		snap.Groups = append(snap.Groups, row)
	}
	s.hist.add(p)
	snap.Point = p
	f, err := encode("snapshot", snap)
	if err != nil {
		s.opts.Logger.Error("encoding the dashboard snapshot", "err", err)
		return
	}
	s.last = f
	for sb := range s.subs {
		s.sendLocked(sb, f)
	}
}

func encode(event string, v any) (*frame, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", event, err)
	}
	return &frame{event: event, data: b}, nil
}

func (s *Server) broadcastLocked(event string, v any) {
	f, err := encode(event, v)
	if err != nil {
		s.opts.Logger.Error("encoding a dashboard event", "err", err)
		return
	}
	for sb := range s.subs {
		s.sendLocked(sb, f)
	}
}

func (s *Server) sendLocked(sb *sub, f *frame) {
	select {
	case sb.ch <- f:
	default:
		s.dropLocked(sb)
	}
}

func (s *Server) dropLocked(sb *sub) {
	if !sb.closed {
		sb.closed = true
		close(sb.ch)
	}
	delete(s.subs, sb)
}

// maxStreams is the most streams open at once. Each holds one of the admin
// API's 256 connections (listen.go) for as long as its reader likes, so
// without a cap a few hundred idle streams would leave no connection for
// golb status, golb scale or /metrics. Past it, GET /v1/stream is a 503.
const maxStreams = 64

// subscribe registers a stream and returns its first frames: the history,
// then the newest snapshot.
func (s *Server) subscribe() (*sub, []*frame, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.subs) >= maxStreams {
		return nil, nil, errTooManyStreams
	}
	h, err := encode("history", history{StepMS: s.opts.Interval.Milliseconds(), Points: s.hist.all(), Events: append([]Event(nil), s.events...)})
	if err != nil {
		return nil, nil, err
	}
	first := []*frame{h}
	if s.last != nil {
		first = append(first, s.last)
	}
	sb := &sub{ch: make(chan *frame, 64)}
	s.subs[sb] = true
	return sb, first, nil
}

func (s *Server) unsubscribe(sb *sub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked(sb)
}

// Streams is the number of connected streams.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// serveStream is GET /v1/stream: Server-Sent Events. The first event,
// "history", carries the charts' points so far and the event log; then a
// "snapshot" every Interval and an "event" whenever something happens.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		refuse(w, http.StatusInternalServerError, "streaming is not supported here")
		return
	}
	sb, first, err := s.subscribe()
	if errors.Is(err, errTooManyStreams) {
		w.Header().Set("Retry-After", "10")
		refuse(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if err != nil {
		refuse(w, http.StatusInternalServerError, err.Error())
		return
	}
	defer s.unsubscribe(sb)
	rc := http.NewResponseController(w)
	// A stream outlives the server's ReadTimeout and WriteTimeout: no read
	// deadline (the client sends nothing more; its leaving ends the
	// request's context), and a write deadline per frame (write).
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(f *frame) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", f.event, f.data)
		return err == nil
	}
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	for _, f := range first {
		if !write(f) {
			return
		}
	}
	fl.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case f, ok := <-sb.ch:
			if !ok || !write(f) {
				return
			}
			fl.Flush()
		}
	}
}

// serveEvents is GET /v1/events: the event log, newest first.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	out := make([]Event, len(s.events))
	for i, e := range s.events {
		out[len(s.events)-1-i] = e
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// serveDrain is POST /v1/workers/{id}/drain.
func (s *Server) serveDrain(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.views.Drain(id)
	switch {
	case errors.Is(err, ErrNoWorker):
		refuse(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrNotRunning):
		refuse(w, http.StatusConflict, err.Error())
	case err != nil:
		refuse(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusAccepted, map[string]string{"worker": id, "status": "draining"})
	}
}
