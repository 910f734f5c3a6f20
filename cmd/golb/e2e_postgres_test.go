package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/golb/golb/core/config"
	"github.com/golb/golb/internal/testutil"
	"github.com/golb/golb/internal/testutil/pgtest"
)

// pgPorts are the postgres tests' ports: 19000-20999, a sub-range of
// cmd/golb's 10000-20999 that the other tests' newPorts draws from as well,
// each call further on (testutil.PortRange), so none overlaps in one run.
func pgPorts(t testing.TB) ports {
	base := testutil.PortRange(t, 19000, 21000, 20)
	return ports{worker: base, lb: base + 12, admin: base + 16}
}

// pgAgent is one golb agent of a shared-database test: its own data_dir,
// worker, listener and admin ports.
type pgAgent struct {
	dir, cfg string
	pt       ports
	p        *golbProc
}

// writePGConfig writes writeConfig's 3 process workers (writeStatsConfig's
// failure rate, 1 ms delay) with their stats going to the postgres sink; the
// DSN comes from $GOLB_STATS_DSN.
func writePGConfig(t testing.TB, dir string, pt ports, failure float64, flush string) string {
	t.Helper()
	path := writeStatsConfig(t, dir, pt, failure, "1ms")
	raw := mustRead(t, path)
	block := fmt.Sprintf("stats {\n  sink           = \"postgres\"\n  flush_interval = %q\n}", flush)
	if !strings.Contains(raw, `stats { path = "stats.db" }`) {
		t.Fatal("writeConfig's stats block moved: update writePGConfig")
	}
	mustWrite(t, path, strings.Replace(raw, `stats { path = "stats.db" }`, block, 1))
	return path
}

func startPGAgent(t *testing.T, failure float64, flush string) *pgAgent {
	t.Helper()
	a := &pgAgent{dir: t.TempDir(), pt: pgPorts(t)}
	a.cfg = writePGConfig(t, a.dir, a.pt, failure, flush)
	a.p = golb(t, a.dir, a.pt.adminAddr(), "run", a.cfg)
	a.p.waitHealthy(3, 30*time.Second)
	return a
}

// load sends n requests through both listeners of a, from 8 clients, and
// returns the 500s and the transport errors it saw.
func (a *pgAgent) load(n int) (failed, errs int64) {
	var next, bad, broken atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				code, err := hello(a.pt.lb + int(i%2))
				switch {
				case err != nil || (code != 200 && code != 500):
					broken.Add(1)
				case code == 500:
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return bad.Load(), broken.Load()
}

// dbTotals reads the shared totals straight from the database: requests and
// failures of all workers, and of each instance.
func dbTotals(t testing.TB, dsn string) (total, failed uint64, byInstance map[string]uint64, workers int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT instance, success, failed FROM golb_worker_totals`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	byInstance = map[string]uint64{}
	for rows.Next() {
		var inst string
		var ok, bad int64
		if err := rows.Scan(&inst, &ok, &bad); err != nil {
			t.Fatal(err)
		}
		total += uint64(ok + bad)
		failed += uint64(bad)
		byInstance[inst] += uint64(ok + bad)
		workers++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return total, failed, byInstance, workers
}

// TestPostgresTwoAgentsShareExactStats is the acceptance test: two
// agents (own data_dirs and ports) share one PostgreSQL, each serves 10,000
// requests to its 3 workers, and PostgreSQL is stopped for 10 s in the middle.
// The clients see no error; golb status says the database is unreachable
// meanwhile; afterwards /worker/stats on either agent lists all 6 workers with
// exactly 20,000 requests, successes plus failures equal to the total, and the
// failures equal to the 500s the clients saw; golb stats names each worker's
// agent.
func TestPostgresTwoAgentsShareExactStats(t *testing.T) {
	srv := pgtest.Private(t)
	dsn := srv.NewDatabase(t)
	t.Setenv(config.StatsDSNEnv, dsn)
	agents := []*pgAgent{startPGAgent(t, 0.1, "200ms"), startPGAgent(t, 0.1, "200ms")}
	const perAgent = 10000
	var clientFailed, clientErrs atomic.Int64
	phase := func(n int) {
		var wg sync.WaitGroup
		for _, a := range agents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, e := a.load(n)
				clientFailed.Add(f)
				clientErrs.Add(e)
			}()
		}
		wg.Wait()
	}
	phase(3000)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	phase(4000)
	eventually(t, 30*time.Second, "golb status to say the database is unreachable", func() bool {
		out, _ := runGolb(t, agents[0].dir, agents[0].pt.adminAddr(), "status")
		return strings.Contains(out, "stats: database unreachable since")
	})
	_, body, _ := get("http://" + agents[0].pt.adminAddr() + "/metrics")
	if !strings.Contains(body, "golb_stats_flush_errors_total") || strings.Contains(body, "golb_stats_flush_errors_total 0\n") {
		t.Errorf("/metrics during the outage counts no flush errors:\n%s", grepLines(body, "golb_stats_"))
	}
	time.Sleep(time.Until(stopped.Add(10 * time.Second)))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("postgres was stopped for %v", time.Since(stopped).Round(time.Millisecond))
	phase(perAgent - 7000)
	if n := clientErrs.Load(); n != 0 {
		t.Fatalf("clients saw %d errors", n)
	}
	const want = 2 * perAgent
	for i, a := range agents {
		eventually(t, 60*time.Second, fmt.Sprintf("agent %d to list 6 workers and %d requests", i, want), func() bool {
			s := fetchStats(t, a.pt.lb)
			return len(s["TotalRequests"]) == 7 && s.get("TotalRequests", "total") == want
		})
		s := fetchStats(t, a.pt.lb+1)
		ok, failed, total := s.get("SuccessfulRequests", "total"), s.get("FailedRequests", "total"), s.get("TotalRequests", "total")
		if ok+failed != total || total != want || failed != float64(clientFailed.Load()) {
			t.Errorf("agent %d: %v successes + %v failures of %v; clients saw %d failures of %d", i, ok, failed, total, clientFailed.Load(), want)
		}
	}
	total, failed, byInstance, workers := dbTotals(t, dsn)
	t.Logf("database: %d workers, %d requests, %d failed, by agent %v", workers, total, failed, byInstance)
	if total != want || workers != 6 || len(byInstance) != 2 || failed != uint64(clientFailed.Load()) {
		t.Fatalf("database holds %d requests (%d failed) of %d workers from %d agents; want %d of 6 from 2", total, failed, workers, len(byInstance), want)
	}
	for inst, n := range byInstance {
		if n != perAgent {
			t.Errorf("agent %s: %d requests in the database, want %d", inst, n, perAgent)
		}
	}
	out, code := runGolb(t, agents[1].dir, agents[1].pt.adminAddr(), "stats")
	if code != 0 || !strings.Contains(out, "AGENT") {
		t.Fatalf("golb stats: exit %d:\n%s", code, out)
	}
	for _, a := range agents {
		inst, _ := os.Hostname()
		abs, _ := filepath.Abs(filepath.Join(a.dir, ".golb"))
		for _, w := range a.p.workers() {
			if line := grepLines(out, w.ID); !strings.Contains(line, inst+":"+abs) {
				t.Errorf("golb stats does not name %s's agent %s:%s: %q", w.ID, inst, abs, line)
			}
		}
	}
}

// TestPostgresAgentKilledLosesAtMostOneFlush: one of two agents sharing a
// database is SIGKILLed under load. The database keeps every request it
// answered more than one flush interval (plus lossMargin for a slow machine)
// before the kill, never more than it answered, and the other agent's counts
// are exact and untouched. Started again on its data_dir it adopts its
// workers and adds to its rows.
func TestPostgresAgentKilledLosesAtMostOneFlush(t *testing.T) {
	srv := pgtest.Private(t)
	dsn := srv.NewDatabase(t)
	t.Setenv(config.StatsDSNEnv, dsn)
	const interval = 500 * time.Millisecond
	const lossMargin = 1500 * time.Millisecond // a flush delayed by a busy CI machine
	victim, other := startPGAgent(t, 0, interval.String()), startPGAgent(t, 0, interval.String())
	if _, errs := other.load(2000); errs != 0 {
		t.Fatalf("%d client errors", errs)
	}

	// Steady load on the victim, each answer's time kept.
	var (
		mu      sync.Mutex
		answers []time.Time
	)
	stopLoad := make(chan struct{})
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopLoad:
					return
				default:
				}
				if code, err := hello(victim.pt.lb + (c+i)%2); err == nil && code == 200 {
					mu.Lock()
					answers = append(answers, time.Now())
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(5 * time.Second)
	if err := victim.p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	victim.p.wait(10 * time.Second)
	close(stopLoad)
	wg.Wait()
	mu.Lock()
	var before int
	for _, at := range answers {
		if at.Before(killed.Add(-interval - lossMargin)) {
			before++
		}
	}
	answered := len(answers)
	mu.Unlock()

	_, _, byInstance, _ := dbTotals(t, dsn)
	victimInst := hostDir(victim.dir)
	otherInst := hostDir(other.dir)
	got := byInstance[victimInst]
	t.Logf("victim: %d answered, %d of them %v before the kill, %d in the database (%d lost)", answered, before, interval+lossMargin, got, answered-int(got))
	if got < uint64(before) || got > uint64(answered) {
		t.Fatalf("victim's rows hold %d requests; want between %d and %d", got, before, answered)
	}
	if byInstance[otherInst] != 2000 {
		t.Fatalf("the other agent's rows hold %d requests, want its 2000", byInstance[otherInst])
	}
	if s := fetchStats(t, other.pt.lb); s.get("TotalRequests", "total") < 2000+float64(before) {
		t.Errorf("the other agent's /worker/stats: %v requests", s.get("TotalRequests", "total"))
	}

	// Started again: the same instance adopts its workers and adds to its rows.
	victim.p = golb(t, victim.dir, victim.pt.adminAddr(), "run", victim.cfg)
	victim.p.waitHealthy(3, 30*time.Second)
	if _, errs := victim.load(300); errs != 0 {
		t.Fatalf("%d client errors after the restart", errs)
	}
	eventually(t, 30*time.Second, "the restarted agent's requests in the database", func() bool {
		_, _, b, _ := dbTotals(t, dsn)
		return b[victimInst] == got+300
	})
	if err := victim.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := victim.p.wait(60 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}

// TestPostgresValidateConnects: golb validate connects to the DSN: a wrong
// password and a missing database are one error line naming the fix (and
// never the password, from the environment or written in the file), and golb
// run refuses to start on them; a good DSN is valid.
func TestPostgresValidateConnects(t *testing.T) {
	srv := pgtest.Private(t)
	dsn := srv.NewDatabase(t)
	dir := t.TempDir()
	pt := pgPorts(t)
	cfg := writePGConfig(t, dir, pt, 0, "1s")
	for _, c := range []struct {
		dsn, want string
		code      int
	}{
		{dsn, "valid", 0},
		{srv.DSNAs(pgtest.PasswordUser, "hunter2-wrong", "postgres"), "fix the user or password", 1},
		{srv.DSN("no_such_db"), "create the database", 1},
	} {
		t.Setenv(config.StatsDSNEnv, c.dsn)
		out, code := runGolb(t, dir, pt.adminAddr(), "validate", cfg)
		if code != c.code || !strings.Contains(out, c.want) || strings.Contains(out, "hunter2") {
			t.Errorf("golb validate with %s: exit %d, want %d and %q without the password:\n%s", c.want, code, c.code, c.want, out)
		}
		if c.code != 0 {
			out, code = runGolb(t, dir, pt.adminAddr(), "run", cfg)
			if code != 1 || !strings.Contains(out, c.want) || !strings.Contains(out, "not starting") {
				t.Errorf("golb run with %s: exit %d:\n%s", c.want, code, out)
			}
		}
	}
	// A password written in the file is not printed back with the source
	// line the diagnostic points at.
	t.Setenv(config.StatsDSNEnv, "")
	raw := mustRead(t, cfg)
	inFile := strings.Replace(raw, `sink           = "postgres"`, `sink           = "postgres"
  dsn            = "`+srv.DSNAs(pgtest.PasswordUser, "hunter2-wrong", "postgres")+`"`, 1)
	mustWrite(t, cfg, inFile)
	out, code := runGolb(t, dir, pt.adminAddr(), "validate", cfg)
	if code != 1 || !strings.Contains(out, "fix the user or password") || strings.Contains(out, "hunter2") {
		t.Errorf("golb validate with a wrong password in the file: exit %d, want 1, the fix and no password:\n%s", code, out)
	}
	if pids := workerPIDs(t, dir); len(pids) != 0 {
		t.Fatalf("golb run on a bad DSN started workers: %v", pids)
	}
}

// TestPostgresDownAtShutdownLogsTheLoss: golb stopped while PostgreSQL is
// down tries its final flush within stop's grace period, exits 0, and logs
// how many requests it could not store.
func TestPostgresDownAtShutdownLogsTheLoss(t *testing.T) {
	srv := pgtest.Private(t)
	t.Setenv(config.StatsDSNEnv, srv.NewDatabase(t))
	a := startPGAgent(t, 0, "1s")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, errs := a.load(200); errs != 0 {
		t.Fatalf("%d client errors while the database is down", errs)
	}
	stopping := time.Now()
	if err := a.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a.p.wait(90 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	t.Logf("stopped in %v", time.Since(stopping).Round(time.Millisecond))
	line := grepLines(a.p.out.String(), "final stats flush failed")
	if !strings.Contains(line, "requests_lost=200") || !strings.Contains(line, "200 requests not stored") {
		t.Fatalf("no final flush error with the 200 requests lost:\n%s", a.p.out.String())
	}
}

// hostDir is the default stats instance of an agent run in dir: the host
// name and the absolute data_dir.
func hostDir(dir string) string {
	host, _ := os.Hostname()
	abs, _ := filepath.Abs(filepath.Join(dir, ".golb"))
	return host + ":" + abs
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
