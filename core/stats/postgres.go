//go:build !nopostgres

package stats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The postgres sink is built in unless golb is built with -tags nopostgres (for a
// worker binary without the PostgreSQL driver: see nopostgres.go).
func init() {
	registry.open["postgres"] = func(ctx context.Context, s Settings) (Sink, error) { return OpenPostgres(ctx, s) }
}

// DefaultConnectTimeout bounds connecting when the DSN sets no connect_timeout.
const DefaultConnectTimeout = 5 * time.Second

// PostgresSink stores the totals of several agents' workers in one PostgreSQL
// database. Each agent adds its own workers' deltas under its instance name, in
// transactions that also record the agent's last applied flush sequence, so a
// retried flush is never counted twice (see Apply), and reads the totals back:
// its own workers' always, the others' up to MaxSharedWorkers (newest first), so
// that rows accumulating over the months never fail a flush or a start. See
// postgres_migrate.go for the schema and its versions.
type PostgresSink struct {
	pool     *pgxpool.Pool
	target   string // user@host:port/database, without the password
	instance string
	runID    string // this process's claim on instance
	nextSeq  uint64

	// hook, when set (tests only), runs at "before-commit" and "after-commit" of
	// Apply; an error it returns is Apply's, as if the connection broke there.
	hook func(stage string) error
}

// OpenPostgres connects to the database s.DSN names, creates or migrates the
// schema, and claims s.Instance for this process: a flush by an earlier process
// under the same name then fails with ErrInstanceTaken. Errors are one line,
// name the fix, and never print the DSN's password.
func OpenPostgres(ctx context.Context, s Settings) (*PostgresSink, error) {
	p, err := connectPostgres(ctx, s)
	if err != nil {
		return nil, err
	}
	if err := p.init(ctx); err != nil {
		p.pool.Close()
		return nil, p.wrap("opening stats database", err)
	}
	return p, nil
}

// CheckPostgres connects to the database s.DSN names and checks that this golb
// can use its schema, changing nothing: `golb validate`.
func CheckPostgres(ctx context.Context, s Settings) error {
	p, err := connectPostgres(ctx, s)
	if err != nil {
		return err
	}
	defer p.pool.Close()
	if err := checkSchema(ctx, p.pool); err != nil {
		return p.wrap("checking stats database", err)
	}
	return nil
}

// Check verifies that the sink s names can be opened, without writing to it: it
// connects to a postgres DSN; other sinks have nothing to check before Open.
func Check(ctx context.Context, s Settings) error {
	if s.Sink == "postgres" {
		return CheckPostgres(ctx, s)
	}
	return nil
}

func connectPostgres(ctx context.Context, s Settings) (*PostgresSink, error) {
	if strings.TrimSpace(s.DSN) == "" {
		return nil, errors.New("opening stats database: no dsn: set stats.dsn or $GOLB_STATS_DSN")
	}
	if err := CheckInstance(s.Instance); err != nil {
		return nil, fmt.Errorf("opening stats database: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(s.DSN)
	if err != nil {
		return nil, fmt.Errorf("opening stats database: %w", dsnError(err))
	}
	cfg.MaxConns = 4
	cfg.MinConns = 0
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "golb"
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	p := &PostgresSink{
		target:   describeTarget(cfg.ConnConfig),
		instance: s.Instance,
		runID:    hex.EncodeToString(b[:]),
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, p.wrap("opening stats database", err)
	}
	p.pool = pool
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, p.wrap("opening stats database", err)
	}
	return p, nil
}

// dsnError is a parse error of the DSN without the DSN itself (pgx redacts the
// password only as far as it can tell where it is).
func dsnError(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		msg = msg[i+3:]
	}
	return fmt.Errorf("%w: stats.dsn (or $GOLB_STATS_DSN) is not a libpq URL or key=value string: %s", ErrBadDSN, oneLine(msg, 200))
}

// describeTarget is user@host:port/database, to name the database in errors.
func describeTarget(c *pgx.ConnConfig) string {
	host := c.Host
	if !strings.HasPrefix(host, "/") {
		host = net.JoinHostPort(host, strconv.Itoa(int(c.Port)))
	} else {
		host += ":" + strconv.Itoa(int(c.Port))
	}
	return oneLine(fmt.Sprintf("%s@%s/%s", c.User, host, c.Database), 200)
}

// Target is the database as user@host:port/database, without any password.
func (p *PostgresSink) Target() string { return p.target }

// Instance is the name under which this agent's rows are written.
func (p *PostgresSink) Instance() string { return p.instance }

// NextSeq implements SharedSink.
func (p *PostgresSink) NextSeq() uint64 { return p.nextSeq }

func (p *PostgresSink) init(ctx context.Context) error {
	if err := migratePostgres(ctx, p.pool); err != nil {
		return err
	}
	var last int64
	err := p.pool.QueryRow(ctx, `INSERT INTO golb_stats_instances (instance, run_id) VALUES ($1, $2)
ON CONFLICT (instance) DO UPDATE SET run_id = excluded.run_id, started_at = now(), updated_at = now()
RETURNING last_seq`, p.instance, p.runID).Scan(&last)
	if err != nil {
		return fmt.Errorf("claiming instance %q: %w", p.instance, err)
	}
	if last < 0 {
		return fmt.Errorf("%w: instance %q has last_seq %d", ErrInvalidTotals, p.instance, last)
	}
	p.nextSeq = uint64(last) + 1
	return nil
}

// Load returns the shared totals of the newest MaxSharedWorkers workers, all
// agents', in first-seen order: Read with no own workers.
func (p *PostgresSink) Load(ctx context.Context) ([]Totals, error) {
	v, err := p.Read(ctx, nil)
	return v.Totals, err
}

// Read implements SharedSink.
func (p *PostgresSink) Read(ctx context.Context, own []string) (SharedView, error) {
	v, err := readSharedTotals(ctx, p.pool, own)
	if err != nil {
		return SharedView{}, p.wrap("loading stats from", err)
	}
	return v, nil
}

// Write refuses absolute totals: in a database several agents share, each adds
// deltas through Apply, which is what the Aggregator calls.
func (p *PostgresSink) Write(context.Context, []Totals) error {
	return fmt.Errorf("writing stats to %s: %w", p.target, ErrSharedSink)
}

// upsertDeltaSQL adds a worker's deltas to its row, each sum at most
// 2^63-1 (bigint's top) as the Aggregator's own: a row near the top stops
// growing there, not failing every flush with "bigint out of range".
const upsertDeltaSQL = `INSERT INTO golb_worker_totals AS t (worker_id, instance, success, failed, latency_ns)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (worker_id) DO UPDATE SET
	success    = LEAST(t.success::numeric + excluded.success, 9223372036854775807)::bigint,
	failed     = LEAST(t.failed::numeric + excluded.failed, 9223372036854775807)::bigint,
	latency_ns = LEAST(t.latency_ns::numeric + excluded.latency_ns, 9223372036854775807)::bigint,
	instance   = excluded.instance,
	updated_at = now()`

// Apply implements SharedSink: in one transaction it locks this instance's row,
// refuses if another process has claimed the instance since (ErrInstanceTaken),
// adds each batch whose Seq is above the recorded last_seq, records the last one,
// and reads the shared totals back as Read does: own (this agent's workers)
// always, the others up to MaxSharedWorkers. However many rows accumulate, a
// flush never fails for their number.
func (p *PostgresSink) Apply(ctx context.Context, batches []Batch, own []string) (SharedView, error) {
	for _, b := range batches {
		for _, d := range b.Deltas {
			if err := checkTotals(d); err != nil {
				return SharedView{}, p.wrap("writing stats to", err)
			}
		}
	}
	out, err := p.apply(ctx, batches, own)
	if err != nil {
		return SharedView{}, p.wrap("writing stats to", err)
	}
	return out, nil
}

func (p *PostgresSink) apply(ctx context.Context, batches []Batch, own []string) (SharedView, error) {
	var none SharedView
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return none, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	var (
		last  int64
		owner string
	)
	err = tx.QueryRow(ctx, `SELECT last_seq, run_id FROM golb_stats_instances WHERE instance = $1 FOR UPDATE`, p.instance).Scan(&last, &owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// The row was deleted by hand: claim the name again from sequence 0.
		if _, err := tx.Exec(ctx, `INSERT INTO golb_stats_instances (instance, run_id) VALUES ($1, $2)`, p.instance, p.runID); err != nil {
			return none, fmt.Errorf("claiming instance %q again: %w", p.instance, err)
		}
		last, owner = 0, p.runID
	case err != nil:
		return none, fmt.Errorf("reading instance %q: %w", p.instance, err)
	}
	if owner != p.runID {
		return none, fmt.Errorf("%w: instance %q: give each agent its own stats.instance (or stop the other agent)", ErrInstanceTaken, p.instance)
	}
	applied := last
	var pb pgx.Batch
	for _, b := range batches {
		if b.Seq > math.MaxInt64 {
			return none, fmt.Errorf("%w: flush sequence beyond 2^63-1", ErrInvalidTotals)
		}
		if int64(b.Seq) <= applied {
			continue // committed before, its answer lost: never count it twice
		}
		for _, d := range b.Deltas {
			pb.Queue(upsertDeltaSQL, d.WorkerID, p.instance, int64(d.Success), int64(d.Failed), int64(d.LatencySum))
		}
		applied = int64(b.Seq)
	}
	if applied != last {
		pb.Queue(`UPDATE golb_stats_instances SET last_seq = $2, updated_at = now() WHERE instance = $1`, p.instance, applied)
	}
	if pb.Len() > 0 {
		if err := tx.SendBatch(ctx, &pb).Close(); err != nil {
			return none, fmt.Errorf("adding counts: %w", err)
		}
	}
	out, err := readSharedTotals(ctx, tx, own)
	if err != nil {
		return none, err
	}
	if err := p.runHook("before-commit"); err != nil {
		return none, err
	}
	if err := tx.Commit(ctx); err != nil {
		return none, fmt.Errorf("committing: %w", err)
	}
	if err := p.runHook("after-commit"); err != nil {
		return none, err
	}
	return out, nil
}

func (p *PostgresSink) runHook(stage string) error {
	if p.hook == nil {
		return nil
	}
	return p.hook(stage)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readSharedTotals reads the rows of the workers in own, whatever their number,
// and the newest MaxSharedWorkers others (by seq: first seen most recently),
// in first-seen order, refusing rows no golb wrote (negative counts, empty or
// oversized ids). More rows than that is no error (Omitted): every worker that
// ever served gets a row, so churn alone reaches any bound; what is read, and
// so the memory it takes, stays bounded by the bound plus own.
func readSharedTotals(ctx context.Context, q querier, own []string) (SharedView, error) {
	var v SharedView
	newest, err := scanTotals(ctx, q, MaxSharedWorkers+1, `SELECT seq, worker_id, instance, success, failed, latency_ns
FROM golb_worker_totals ORDER BY seq DESC LIMIT $1`, MaxSharedWorkers+1)
	if err != nil {
		return v, err
	}
	if len(newest) > MaxSharedWorkers {
		v.Omitted = true
		newest = newest[:MaxSharedWorkers]
	}
	slices.Reverse(newest)
	var older []seqTotals
	if v.Omitted && len(own) > 0 {
		// Own workers first seen before the newest: still read, every one.
		older, err = scanTotals(ctx, q, len(own), `SELECT seq, worker_id, instance, success, failed, latency_ns
FROM golb_worker_totals WHERE worker_id = ANY($1) AND seq < $2 ORDER BY seq`, own, newest[0].seq)
		if err != nil {
			return v, err
		}
	}
	v.Totals = make([]Totals, 0, len(older)+len(newest))
	for _, r := range older {
		v.Totals = append(v.Totals, r.Totals)
	}
	for _, r := range newest {
		v.Totals = append(v.Totals, r.Totals)
	}
	return v, nil
}

type seqTotals struct {
	seq int64
	Totals
}

// scanTotals runs a query of seq and a worker's totals, reading at most limit
// rows (own workers' ids are unique: the query cannot return more).
func scanTotals(ctx context.Context, q querier, limit int, sql string, args ...any) ([]seqTotals, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("reading totals: %w", err)
	}
	defer rows.Close()
	var out []seqTotals
	for rows.Next() {
		var (
			seq          int64
			id, inst     string
			ok, bad, lat int64
		)
		if len(out) == limit {
			break
		}
		if err := rows.Scan(&seq, &id, &inst, &ok, &bad, &lat); err != nil {
			return nil, fmt.Errorf("reading totals: %w", err)
		}
		switch {
		case id == "" || len(id) > maxWorkerID || len(inst) > maxWorkerID:
			return nil, fmt.Errorf("%w: a row of golb_worker_totals has an empty or oversized worker id or instance: delete it", ErrInvalidTotals)
		case ok < 0 || bad < 0 || lat < 0:
			return nil, fmt.Errorf("%w: worker %s has a negative count: fix or delete its row in golb_worker_totals", ErrInvalidTotals, oneLine(id, 80))
		}
		out = append(out, seqTotals{seq, Totals{WorkerID: id, Instance: inst, Success: uint64(ok), Failed: uint64(bad), LatencySum: time.Duration(lat)}})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading totals: %w", err)
	}
	return out, nil
}

// Close closes the connections.
func (p *PostgresSink) Close() error {
	p.pool.Close()
	return nil
}

// wrap is "DOING TARGET: WHAT (FIX)": one line naming the database, the cause and
// the way out, marked with ErrUnreachable when the server could not be reached.
func (p *PostgresSink) wrap(doing string, err error) error {
	hint, unreachable := pgHint(err)
	msg := oneLine(err.Error(), 400)
	if hint != "" {
		msg += ": " + hint
	}
	if unreachable {
		return fmt.Errorf("%s %s: %w: %s", doing, p.target, ErrUnreachable, wrapMsg{msg, err})
	}
	return fmt.Errorf("%s %s: %w", doing, p.target, wrapMsg{msg, err})
}

// wrapMsg is err with a one-line message of its own; errors.Is and As see err.
type wrapMsg struct {
	msg string
	err error
}

func (w wrapMsg) Error() string { return w.msg }
func (w wrapMsg) Unwrap() error { return w.err }

// pgHint names the fix for an error of the server or the connection, and
// whether it means the server could not be reached (retrying may help).
func pgHint(err error) (hint string, unreachable bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "28P01" || pe.Code == "28000":
			return "fix the user or password in stats.dsn or $GOLB_STATS_DSN (or in ~/.pgpass)", false
		case pe.Code == "3D000":
			return "create the database (createdb NAME) or fix its name in stats.dsn", false
		case pe.Code == "42501":
			return "grant the role CREATE on the database's schema, or use a role that owns it", false
		case strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || pe.Code == "53300":
			return "", true
		}
		return "", false
	}
	if errors.Is(err, ErrInvalidTotals) || errors.Is(err, ErrInstanceTaken) || errors.Is(err, ErrSchemaTooNew) || errors.Is(err, ErrBadDSN) {
		return "", false
	}
	if errors.Is(err, context.Canceled) {
		return "", false
	}
	// Dial errors, timeouts, a connection cut mid-query: nothing answered.
	return "is PostgreSQL running there? check the host and port in stats.dsn", true
}

var _ SharedSink = (*PostgresSink)(nil)

// ParseDSN checks the syntax of a PostgreSQL connection string, without
// connecting; its error never holds the string.
func ParseDSN(dsn string) error {
	if _, err := pgxpool.ParseConfig(dsn); err != nil {
		return dsnError(err)
	}
	return nil
}
