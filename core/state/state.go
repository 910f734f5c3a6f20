// Package state keeps golb's desired state (groups) and actual state (workers,
// driver plugins) in go-memdb. Writers use one transaction per change; readers
// pass a WatchSet and are woken when what they read changes, so the balancer
// and reconciler never poll. Objects read from the store are never modified in
// place: callers copy, change and Upsert, or change a record in one
// transaction with UpdateGroup, UpdateWorker or UpdateDriver.
package state

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/golb/golb/drivers"
)

// WorkerStatus is a worker's place in its life cycle.
type WorkerStatus string

// Worker statuses, as the admin API reports them.
const (
	StatusPending  WorkerStatus = "pending"  // being started
	StatusRunning  WorkerStatus = "running"  // started; the balancer health-checks it
	StatusDraining WorkerStatus = "draining" // out of the pool, finishing in-flight requests
	StatusStopped  WorkerStatus = "stopped"  // stopped by golb
	StatusFailed   WorkerStatus = "failed"   // exited on its own
	StatusLost     WorkerStatus = "lost"     // it could not be recovered with its plugin, or not be stopped: it may still run
)

// Live reports whether the worker counts toward its group's desired count.
func (s WorkerStatus) Live() bool { return s == StatusPending || s == StatusRunning }

// Group is the desired state of one group.
type Group struct {
	Name    string
	Driver  string
	Desired int
	// Min and Max bound Desired (from the scale block, or Desired itself).
	Min, Max int
	// Failing is set while the group cannot keep its desired count: its
	// workers crash-loop, or its driver cannot list what an earlier run left
	// (its runtime is down), so nothing of it may start yet.
	Failing bool
	// Reason is why, worded for `golb status`: "crash-looping: LAST EXIT"
	// or "waiting for DRIVER: ERROR". Empty while not Failing.
	Reason string
	// RolloutStopped is why the group's last rollover stopped with its old
	// workers serving (a replacement not healthy within the update
	// block's healthy_deadline, or one that failed): core/rollout.go. It
	// is cleared by the next change of the group's settings.
	RolloutStopped string
}

// Worker is the actual state of one worker.
type Worker struct {
	ID        string
	Group     string
	Driver    string
	Port      int
	Address   string
	Status    WorkerStatus
	Handle    *drivers.Handle
	StartedAt time.Time
	UpdatedAt time.Time
	Exit      *drivers.ExitResult
	// Reason is why a lost worker is lost, for `golb status`, e.g. "could
	// not be stopped: stop: context deadline exceeded; destroy: …".
	Reason string
	// Details are the driver's facts about it (pid and log files, container
	// id), read once when it started or was adopted.
	Details map[string]string
	// Adopted is set for a worker found again after a golb restart.
	Adopted bool
	// Outdated marks an adopted worker whose group's settings changed: it
	// serves until enough replacements are healthy, then it is stopped.
	Outdated bool
}

// Driver is what golb knows of one driver plugin.
type Driver struct {
	Name        string
	Info        drivers.Info
	Fingerprint drivers.Fingerprint
	PluginPID   int
	Restarts    int
	Running     bool
	Error       string
	UpdatedAt   time.Time
}

const (
	tableGroups  = "groups"
	tableWorkers = "workers"
	tableDrivers = "drivers"
)

var schema = &memdb.DBSchema{
	Tables: map[string]*memdb.TableSchema{
		tableGroups: {
			Name: tableGroups,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
			},
		},
		tableWorkers: {
			Name: tableWorkers,
			Indexes: map[string]*memdb.IndexSchema{
				"id":     {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
				"group":  {Name: "group", Indexer: &memdb.StringFieldIndex{Field: "Group"}},
				"driver": {Name: "driver", Indexer: &memdb.StringFieldIndex{Field: "Driver"}},
			},
		},
		tableDrivers: {
			Name: tableDrivers,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
			},
		},
	},
}

// Store is golb's state.
type Store struct {
	db *memdb.MemDB
}

// New returns an empty store.
func New() (*Store, error) {
	db, err := memdb.NewMemDB(schema)
	if err != nil {
		return nil, fmt.Errorf("creating state store: %w", err)
	}
	return &Store{db: db}, nil
}

// UpsertGroup writes a copy of g.
func (s *Store) UpsertGroup(g *Group) error {
	cp := *g
	return s.write(tableGroups, &cp)
}

// UpsertWorker writes a copy of w, stamped with UpdatedAt.
func (s *Store) UpsertWorker(w *Worker) error {
	cp := *w
	cp.UpdatedAt = time.Now().UTC()
	return s.write(tableWorkers, &cp)
}

// UpsertDriver writes a copy of d, stamped with UpdatedAt.
func (s *Store) UpsertDriver(d *Driver) error {
	cp := *d
	cp.UpdatedAt = time.Now().UTC()
	return s.write(tableDrivers, &cp)
}

func (s *Store) write(table string, obj any) error {
	txn := s.db.Txn(true)
	defer txn.Abort()
	if err := txn.Insert(table, obj); err != nil {
		return fmt.Errorf("writing %s: %w", table, err)
	}
	txn.Commit()
	return nil
}

// UpdateWorker applies fn to a copy of worker id and writes it back in one
// transaction. It returns false when the worker is gone.
func (s *Store) UpdateWorker(id string, fn func(w *Worker)) (bool, error) {
	txn := s.db.Txn(true)
	defer txn.Abort()
	raw, err := txn.First(tableWorkers, "id", id)
	if err != nil {
		return false, fmt.Errorf("reading worker %s: %w", id, err)
	}
	if raw == nil {
		return false, nil
	}
	w := *raw.(*Worker)
	fn(&w)
	w.UpdatedAt = time.Now().UTC()
	if err := txn.Insert(tableWorkers, &w); err != nil {
		return false, fmt.Errorf("writing worker %s: %w", id, err)
	}
	txn.Commit()
	return true, nil
}

// UpdateGroup applies fn to a copy of group name and writes it back in one
// transaction; an error from fn changes nothing and is returned.
func (s *Store) UpdateGroup(name string, fn func(g *Group) error) error {
	txn := s.db.Txn(true)
	defer txn.Abort()
	raw, err := txn.First(tableGroups, "id", name)
	if err != nil {
		return fmt.Errorf("reading group %s: %w", name, err)
	}
	if raw == nil {
		return fmt.Errorf("%w: %s", ErrNoGroup, name)
	}
	g := *raw.(*Group)
	if err := fn(&g); err != nil {
		return err
	}
	if err := txn.Insert(tableGroups, &g); err != nil {
		return fmt.Errorf("writing group %s: %w", name, err)
	}
	txn.Commit()
	return nil
}

// UpdateDriver applies fn to a copy of driver record name and writes it
// back, stamped with UpdatedAt, in one transaction: concurrent updates of
// one record (a restart, a liveness probe) never lose each other's changes.
func (s *Store) UpdateDriver(name string, fn func(d *Driver) error) error {
	txn := s.db.Txn(true)
	defer txn.Abort()
	raw, err := txn.First(tableDrivers, "id", name)
	if err != nil {
		return fmt.Errorf("reading driver %s: %w", name, err)
	}
	if raw == nil {
		return fmt.Errorf("%w: %s", ErrNoDriver, name)
	}
	d := *raw.(*Driver)
	if err := fn(&d); err != nil {
		return err
	}
	d.UpdatedAt = time.Now().UTC()
	if err := txn.Insert(tableDrivers, &d); err != nil {
		return fmt.Errorf("writing driver %s: %w", name, err)
	}
	txn.Commit()
	return nil
}

// DeleteGroup removes a group (a reload removed it and its workers are gone).
func (s *Store) DeleteGroup(name string) error {
	txn := s.db.Txn(true)
	defer txn.Abort()
	if _, err := txn.DeleteAll(tableGroups, "id", name); err != nil {
		return fmt.Errorf("deleting group %s: %w", name, err)
	}
	txn.Commit()
	return nil
}

// DeleteWorker removes a worker.
func (s *Store) DeleteWorker(id string) error {
	txn := s.db.Txn(true)
	defer txn.Abort()
	if _, err := txn.DeleteAll(tableWorkers, "id", id); err != nil {
		return fmt.Errorf("deleting worker %s: %w", id, err)
	}
	txn.Commit()
	return nil
}

// Group returns one group, or nil.
func (s *Store) Group(ws memdb.WatchSet, name string) (*Group, error) {
	txn := s.db.Txn(false)
	ch, raw, err := txn.FirstWatch(tableGroups, "id", name)
	if err != nil {
		return nil, fmt.Errorf("reading group %s: %w", name, err)
	}
	ws.Add(ch)
	if raw == nil {
		return nil, nil
	}
	return raw.(*Group), nil
}

// Groups returns every group, by name.
func (s *Store) Groups(ws memdb.WatchSet) ([]*Group, error) {
	return list[*Group](s.db.Txn(false), ws, tableGroups, "id")
}

// Workers returns every worker, by id.
func (s *Store) Workers(ws memdb.WatchSet) ([]*Worker, error) {
	return list[*Worker](s.db.Txn(false), ws, tableWorkers, "id")
}

// WorkersByGroup returns the workers of one group.
func (s *Store) WorkersByGroup(ws memdb.WatchSet, group string) ([]*Worker, error) {
	return list[*Worker](s.db.Txn(false), ws, tableWorkers, "group", group)
}

// WorkersByDriver returns the workers one driver runs.
func (s *Store) WorkersByDriver(ws memdb.WatchSet, driver string) ([]*Worker, error) {
	return list[*Worker](s.db.Txn(false), ws, tableWorkers, "driver", driver)
}

// Worker returns one worker, or nil.
func (s *Store) Worker(ws memdb.WatchSet, id string) (*Worker, error) {
	txn := s.db.Txn(false)
	ch, raw, err := txn.FirstWatch(tableWorkers, "id", id)
	if err != nil {
		return nil, fmt.Errorf("reading worker %s: %w", id, err)
	}
	ws.Add(ch)
	if raw == nil {
		return nil, nil
	}
	return raw.(*Worker), nil
}

// Drivers returns every driver record, by name.
func (s *Store) Drivers(ws memdb.WatchSet) ([]*Driver, error) {
	return list[*Driver](s.db.Txn(false), ws, tableDrivers, "id")
}

func list[T any](txn *memdb.Txn, ws memdb.WatchSet, table, index string, args ...any) ([]T, error) {
	it, err := txn.Get(table, index, args...)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", table, err)
	}
	ws.Add(it.WatchCh())
	var out []T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(T))
	}
	return out, nil
}
