package image

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// BinaryKey identifies one version of a binary on disk without reading it:
// a changed binary (rebuilt, replaced) gets a new key, so a driver knows to
// build and load its image again.
type BinaryKey struct {
	Path  string
	Size  int64
	MTime time.Time
	Ino   uint64
}

// KeyOf stats the binary at path.
func KeyOf(path string) (BinaryKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return BinaryKey{}, fmt.Errorf("worker binary: %w", err)
	}
	if st.IsDir() {
		return BinaryKey{}, fmt.Errorf("worker binary %s is a directory", path)
	}
	key := BinaryKey{Path: path, Size: st.Size(), MTime: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		key.Ino = sys.Ino
	}
	return key, nil
}
