package proc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/golb/golb/drivers"
)

// stateExt is the file name ending of a state record.
const stateExt = ".json"

// Store keeps one JSON record per worker id in the directory Dir, as ID.json,
// so that a driver finds its workers again after any crash of golb or of the
// plugin. Records are replaced atomically: a reader sees the old one or the
// new one, never a mix. An id must be non-empty and hold no '/' or NUL.
type Store struct {
	Dir string
}

// Path is the file that holds the record of id. It does not check id.
func (s Store) Path(id string) string { return filepath.Join(s.Dir, id+stateExt) }

// Write stores v, encoded as indented JSON, as the record of id, creating Dir
// if need be. It writes a temporary file and renames it over the record.
func (s Store) Write(id string, v any) error {
	if err := checkID(id); err != nil {
		return err
	}
	blob, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state of %s: %w", id, err)
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	// No fsync: the record outlives a crash of golb, not of the machine, and
	// after a reboot none of the processes it names exist any more.
	tmp, err := os.CreateTemp(s.Dir, id+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing state of %s: %w", id, err)
	}
	_, err = tmp.Write(blob)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.Path(id))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("writing state of %s: %w", id, err)
	}
	return nil
}

// Read decodes the record of id into v. The error wraps fs.ErrNotExist when
// there is none, and drivers.ErrStaleHandle when the file cannot be decoded
// into v (torn or corrupt).
func (s Store) Read(id string, v any) error {
	if err := checkID(id); err != nil {
		return err
	}
	path := s.Path(id)
	blob, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading state of %s: %w", id, err)
	}
	if err := json.Unmarshal(blob, v); err != nil {
		return fmt.Errorf("%w: %s: %v", drivers.ErrStaleHandle, path, err)
	}
	return nil
}

// IDs lists the ids that have a record, in lexical order. A missing Dir
// holds none.
func (s Store) IDs() ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing state directory: %w", err)
	}
	var ids []string
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), stateExt)
		if e.IsDir() || !ok || id == "" {
			continue
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Remove deletes the record of id. Removing a record that does not exist is
// not an error.
func (s Store) Remove(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := os.Remove(s.Path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing state of %s: %w", id, err)
	}
	return nil
}

// OpenLogs opens (creating dir and the files if need be) dir/ID.stdout.log and
// dir/ID.stderr.log for appending, to be a worker's standard output and error.
// The caller closes both once the worker has been started.
func OpenLogs(dir, id string) (stdout, stderr *os.File, err error) {
	if err := checkID(id); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("creating log directory: %w", err)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	stdout, err = os.OpenFile(filepath.Join(dir, id+".stdout.log"), flags, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("opening worker log: %w", err)
	}
	stderr, err = os.OpenFile(filepath.Join(dir, id+".stderr.log"), flags, 0o644)
	if err != nil {
		stdout.Close()
		return nil, nil, fmt.Errorf("opening worker log: %w", err)
	}
	return stdout, stderr, nil
}

// checkID refuses an id that is not a plain file name.
func checkID(id string) error {
	if id == "" || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("%w: invalid worker id %q", drivers.ErrBadConfig, id)
	}
	return nil
}

// PruneLogs removes the log files (OpenLogs) in dir of all but the newest keep
// workers that are gone, so that a crash-looping group does not fill the disk.
// live reports the workers whose logs stay whatever their age.
func PruneLogs(dir string, keep int, live func(id string) bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("pruning worker logs: %w", err)
	}
	newest := map[string]time.Time{} // id → its newest log's mtime
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".stdout.log")
		if !ok {
			id, ok = strings.CutSuffix(e.Name(), ".stderr.log")
		}
		if !ok || live(id) {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.ModTime().After(newest[id]) {
			newest[id] = fi.ModTime()
		}
	}
	if len(newest) <= keep {
		return nil
	}
	gone := make([]string, 0, len(newest))
	for id := range newest {
		gone = append(gone, id)
	}
	sort.Slice(gone, func(i, j int) bool { return newest[gone[i]].After(newest[gone[j]]) })
	for _, id := range gone[keep:] {
		for _, suffix := range []string{".stdout.log", ".stderr.log"} {
			if err := os.Remove(filepath.Join(dir, id+suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("pruning worker logs: %w", err)
			}
		}
	}
	return nil
}
