package state

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
)

// fired waits up to d for ws to fire and reports whether it did.
func fired(t *testing.T, ws memdb.WatchSet, d time.Duration) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return ws.WatchCtx(ctx) == nil
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustUpsertWorker(t *testing.T, s *Store, w *Worker) {
	t.Helper()
	if err := s.UpsertWorker(w); err != nil {
		t.Fatalf("upserting worker %s: %v", w.ID, err)
	}
}

// watchGroup reads group's workers with a fresh WatchSet and returns it.
func watchGroup(t *testing.T, s *Store, group string) (memdb.WatchSet, []*Worker) {
	t.Helper()
	ws := memdb.NewWatchSet()
	got, err := s.WorkersByGroup(ws, group)
	if err != nil {
		t.Fatal(err)
	}
	return ws, got
}

// The WatchSet of a WorkersByGroup read fires on every change to that group's
// workers (insert, update, delete) and stays quiet for other groups.
func TestWorkersByGroupWatchFires(t *testing.T) {
	s := newStore(t)
	mustUpsertWorker(t, s, &Worker{ID: "a-1", Group: "a", Driver: "process", Status: StatusPending})
	mustUpsertWorker(t, s, &Worker{ID: "b-1", Group: "b", Driver: "process", Status: StatusPending})

	const long = 5 * time.Second // fires well before; only a bug waits this long
	const quiet = 150 * time.Millisecond

	steps := []struct {
		name   string
		change func()
		want   bool
	}{
		{"insert into a", func() {
			mustUpsertWorker(t, s, &Worker{ID: "a-2", Group: "a", Driver: "process", Status: StatusPending})
		}, true},
		{"update in a", func() {
			ok, err := s.UpdateWorker("a-1", func(w *Worker) { w.Status = StatusRunning })
			if !ok || err != nil {
				t.Fatalf("UpdateWorker a-1: %v %v", ok, err)
			}
		}, true},
		{"delete from a", func() {
			if err := s.DeleteWorker("a-2"); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"insert into b", func() {
			mustUpsertWorker(t, s, &Worker{ID: "b-2", Group: "b", Driver: "process", Status: StatusPending})
		}, false},
		{"update in b", func() { _, _ = s.UpdateWorker("b-1", func(w *Worker) { w.Status = StatusRunning }) }, false},
		{"delete from b", func() { _ = s.DeleteWorker("b-2") }, false},
	}
	for _, st := range steps {
		ws, _ := watchGroup(t, s, "a")
		if fired(t, ws, 0) {
			t.Fatalf("%s: WatchSet fired before any change", st.name)
		}
		st.change()
		wait := quiet
		if st.want {
			wait = long
		}
		start := time.Now()
		if got := fired(t, ws, wait); got != st.want {
			t.Errorf("%s: watch on group a fired=%v, want %v", st.name, got, st.want)
		} else if got {
			t.Logf("%s: fired after %v", st.name, time.Since(start))
		}
	}
	_, got := watchGroup(t, s, "a")
	if len(got) != 1 || got[0].ID != "a-1" || got[0].Status != StatusRunning {
		t.Fatalf("group a now holds %+v, want a-1 running", got)
	}
}

// A WatchSet on a single worker or group fires when that object changes.
func TestWorkerAndGroupWatchFire(t *testing.T) {
	s := newStore(t)
	mustUpsertWorker(t, s, &Worker{ID: "w", Group: "g", Driver: "process", Status: StatusPending})
	if err := s.UpsertGroup(&Group{Name: "g", Driver: "process", Desired: 1, Max: 3}); err != nil {
		t.Fatal(err)
	}

	ws := memdb.NewWatchSet()
	if _, err := s.Worker(ws, "w"); err != nil {
		t.Fatal(err)
	}
	_, _ = s.UpdateWorker("w", func(w *Worker) { w.Address = "127.0.0.1:1" })
	if !fired(t, ws, 5*time.Second) {
		t.Error("Worker watch did not fire on UpdateWorker")
	}

	ws = memdb.NewWatchSet()
	if _, err := s.Groups(ws); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateGroup("g", func(g *Group) error { g.Desired = 2; return nil }); err != nil {
		t.Fatal(err)
	}
	if !fired(t, ws, 5*time.Second) {
		t.Error("Groups watch did not fire on UpdateGroup")
	}

	// A failed UpdateGroup commits nothing, so it wakes nobody.
	ws = memdb.NewWatchSet()
	if _, err := s.Group(ws, "g"); err != nil {
		t.Fatal(err)
	}
	_ = s.UpdateGroup("g", func(g *Group) error { g.Desired = 3; return errors.New("no") })
	if fired(t, ws, 150*time.Millisecond) {
		t.Error("Group watch fired on an UpdateGroup that returned an error")
	}
}

// UpdateWorker changes a copy: a worker read before stays as it was.
func TestUpdateWorkerCopies(t *testing.T) {
	s := newStore(t)
	mustUpsertWorker(t, s, &Worker{ID: "w", Group: "g", Driver: "process", Status: StatusPending})
	before, err := s.Worker(nil, "w")
	if err != nil || before == nil {
		t.Fatalf("Worker: %v %v", before, err)
	}
	stamp := before.UpdatedAt
	if stamp.IsZero() {
		t.Fatal("UpsertWorker did not stamp UpdatedAt")
	}
	time.Sleep(2 * time.Millisecond) // so that a new stamp differs

	ok, err := s.UpdateWorker("w", func(w *Worker) {
		w.Status, w.Address, w.Port = StatusRunning, "127.0.0.1:6000", 6000
	})
	if !ok || err != nil {
		t.Fatalf("UpdateWorker: %v %v", ok, err)
	}
	if before.Status != StatusPending || before.Address != "" || before.Port != 0 || !before.UpdatedAt.Equal(stamp) {
		t.Fatalf("the object read before the update was modified in place: %+v", before)
	}
	after, _ := s.Worker(nil, "w")
	if after == before {
		t.Fatal("UpdateWorker stored the same pointer")
	}
	if after.Status != StatusRunning || after.Address != "127.0.0.1:6000" || after.Port != 6000 {
		t.Fatalf("after update: %+v", after)
	}
	if !after.UpdatedAt.After(stamp) {
		t.Fatalf("UpdatedAt not restamped: %v, was %v", after.UpdatedAt, stamp)
	}
}

// Upserts store a copy: changing the object afterwards changes nothing stored.
func TestUpsertCopies(t *testing.T) {
	s := newStore(t)
	w := &Worker{ID: "w", Group: "g", Driver: "process", Status: StatusPending}
	g := &Group{Name: "g", Driver: "process", Desired: 1, Max: 3}
	d := &Driver{Name: "process", Running: true}
	mustUpsertWorker(t, s, w)
	if err := s.UpsertGroup(g); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertDriver(d); err != nil {
		t.Fatal(err)
	}
	w.Status, g.Desired, d.Running = StatusFailed, 3, false

	sw, _ := s.Worker(nil, "w")
	if sw == w || sw.Status != StatusPending || sw.UpdatedAt.IsZero() {
		t.Errorf("stored worker: %+v (same pointer: %v)", sw, sw == w)
	}
	sg, _ := s.Group(nil, "g")
	if sg == g || sg.Desired != 1 {
		t.Errorf("stored group: %+v (same pointer: %v)", sg, sg == g)
	}
	ds, _ := s.Drivers(nil)
	if len(ds) != 1 || ds[0] == d || !ds[0].Running || ds[0].UpdatedAt.IsZero() {
		t.Errorf("stored driver: %+v", ds)
	}
}

func TestUpdateWorkerMissing(t *testing.T) {
	s := newStore(t)
	called := false
	ok, err := s.UpdateWorker("nope", func(*Worker) { called = true })
	if ok || err != nil {
		t.Fatalf("UpdateWorker on a missing id: %v %v, want false, nil", ok, err)
	}
	if called {
		t.Fatal("fn was called for a missing worker")
	}
	if w, _ := s.Worker(nil, "nope"); w != nil {
		t.Fatalf("UpdateWorker created %+v", w)
	}
}

// UpdateGroup changes a copy; a missing group is ErrNoGroup; an error from
// fn leaves the stored group as it was.
func TestUpdateGroup(t *testing.T) {
	s := newStore(t)
	if err := s.UpsertGroup(&Group{Name: "g", Driver: "process", Desired: 2, Min: 1, Max: 5}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Group(nil, "g")
	if err := s.UpdateGroup("g", func(g *Group) error { g.Desired, g.Failing, g.Reason = 4, true, "boom"; return nil }); err != nil {
		t.Fatal(err)
	}
	if before.Desired != 2 || before.Failing || before.Reason != "" {
		t.Fatalf("the group read before the update was modified in place: %+v", before)
	}
	after, _ := s.Group(nil, "g")
	if after.Desired != 4 || !after.Failing || after.Reason != "boom" {
		t.Fatalf("after update: %+v", after)
	}

	errNo := errors.New("refused")
	if err := s.UpdateGroup("g", func(g *Group) error { g.Desired = 5; return errNo }); !errors.Is(err, errNo) {
		t.Fatalf("fn's error: got %v", err)
	}
	if g, _ := s.Group(nil, "g"); g.Desired != 4 {
		t.Fatalf("a refused update was written: desired %d", g.Desired)
	}

	err := s.UpdateGroup("missing", func(*Group) error { t.Error("fn called for a missing group"); return nil })
	if !errors.Is(err, ErrNoGroup) {
		t.Fatalf("UpdateGroup on a missing group: %v, want ErrNoGroup", err)
	}
	if g, _ := s.Group(nil, "missing"); g != nil {
		t.Fatalf("UpdateGroup created %+v", g)
	}
}

// TestConcurrentDriverUpdatesAreNotLost: core read a driver record outside
// the write transaction, changed a copy and upserted it, so of two updates
// at once (a plugin restart, a liveness probe) one overwrote the other.
// UpdateDriver reads and writes in one transaction: no update is lost.
func TestConcurrentDriverUpdatesAreNotLost(t *testing.T) {
	s := newStore(t)
	if err := s.UpsertDriver(&Driver{Name: "process", Running: true}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Drivers(nil)
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				if err := s.UpdateDriver("process", func(d *Driver) error { d.Restarts++; return nil }); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	ds, _ := s.Drivers(nil)
	if len(ds) != 1 || ds[0].Restarts != writers*each || !ds[0].Running {
		t.Fatalf("after %d concurrent updates: %+v, want Restarts %d and Running kept", writers*each, ds, writers*each)
	}
	if before[0].Restarts != 0 {
		t.Fatalf("the record read before the updates was modified in place: %+v", before[0])
	}

	errNo := errors.New("refused")
	if err := s.UpdateDriver("process", func(d *Driver) error { d.Running = false; return errNo }); !errors.Is(err, errNo) {
		t.Fatalf("fn's error: got %v", err)
	}
	if ds, _ := s.Drivers(nil); !ds[0].Running {
		t.Fatal("a refused update was written")
	}
	err := s.UpdateDriver("missing", func(*Driver) error { t.Error("fn called for a missing driver"); return nil })
	if !errors.Is(err, ErrNoDriver) {
		t.Fatalf("UpdateDriver on a missing driver: %v, want ErrNoDriver", err)
	}
}

func TestWorkerStatusLive(t *testing.T) {
	for st, want := range map[WorkerStatus]bool{
		StatusPending: true, StatusRunning: true,
		StatusDraining: false, StatusStopped: false, StatusFailed: false, StatusLost: false, "": false,
	} {
		if got := st.Live(); got != want {
			t.Errorf("%q.Live() = %v, want %v", st, got, want)
		}
	}
}

// The indexes return what they name, ordered by their key.
func TestIndexes(t *testing.T) {
	s := newStore(t)
	for _, w := range []*Worker{
		{ID: "b-2", Group: "b", Driver: "docker"},
		{ID: "a-1", Group: "a", Driver: "process"},
		{ID: "b-1", Group: "b", Driver: "process"},
	} {
		mustUpsertWorker(t, s, w)
	}
	ids := func(ws []*Worker) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.ID)
		}
		return out
	}
	all, _ := s.Workers(nil)
	if got := ids(all); len(got) != 3 || got[0] != "a-1" || got[1] != "b-1" || got[2] != "b-2" {
		t.Errorf("Workers: %v", got)
	}
	byGroup, _ := s.WorkersByGroup(nil, "b")
	if got := ids(byGroup); len(got) != 2 || got[0] != "b-1" || got[1] != "b-2" {
		t.Errorf("WorkersByGroup(b): %v", got)
	}
	byDriver, _ := s.WorkersByDriver(nil, "process")
	if got := ids(byDriver); len(got) != 2 || got[0] != "a-1" || got[1] != "b-1" {
		t.Errorf("WorkersByDriver(process): %v", got)
	}
	if none, _ := s.WorkersByGroup(nil, "c"); len(none) != 0 {
		t.Errorf("WorkersByGroup(c): %v", ids(none))
	}

	if err := s.UpsertDriver(&Driver{Name: "process", Running: true}); err != nil {
		t.Fatal(err)
	}
	ds, _ := s.Drivers(nil)
	if len(ds) != 1 || ds[0].Name != "process" || ds[0].UpdatedAt.IsZero() {
		t.Errorf("Drivers: %+v", ds)
	}
}
