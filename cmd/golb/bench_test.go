package main

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkLockedStatsDB measures the proxy's p99 latency through a real golb
// under steady load, first with the stats database free, then with it held
// locked (BEGIN EXCLUSIVE from another connection) for 10 s. A slow or locked
// database must not slow the proxy: the ratio should stay near 1.
//
//	go test -run '^$' -bench LockedStatsDB -benchtime 1x ./cmd/golb
func BenchmarkLockedStatsDB(b *testing.B) {
	dir := b.TempDir()
	pt := newPorts(b)
	cfg := writeStatsConfig(b, dir, pt, 0, "1ms")
	p := golb(b, dir, pt.adminAddr(), "run", cfg)
	deadline := time.Now().Add(30 * time.Second)
	for len(p.healthyWorkers()) != 3 {
		if time.Now().After(deadline) {
			b.Fatal("workers not healthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	const phase = 10 * time.Second
	for b.Loop() {
		free := loadP99(pt.lb, phase)

		db, err := sql.Open("sqlite", filepath.Join(dir, "stats.db"))
		if err != nil {
			b.Fatal(err)
		}
		conn, err := db.Conn(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
			b.Fatal(err)
		}
		locked := loadP99(pt.lb, phase)
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		conn.Close()
		db.Close()

		b.ReportMetric(float64(free.Microseconds())/1000, "p99-free-ms")
		b.ReportMetric(float64(locked.Microseconds())/1000, "p99-locked-ms")
		b.ReportMetric(float64(locked)/float64(free), "locked/free")
	}
}

// loadP99 sends GETs from 8 clients for d and returns the 99th percentile.
func loadP99(port int, d time.Duration) time.Duration {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) {
				start := time.Now()
				if _, err := hello(port); err == nil {
					mine = append(mine, time.Since(start))
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100]
}
