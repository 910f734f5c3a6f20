// Package pgtest runs private PostgreSQL servers for tests: initdb into a new
// temp directory, a postgres process listening only on a unix socket in that
// directory (listen_addresses empty), so no TCP port can clash and no system
// cluster is touched, and everything removed afterwards. As root, initdb and
// postgres (which both refuse to run as root) run as the postgres or nobody
// user, owning the directory; as any other user, as that user.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/golb/golb/internal/testutil"
)

// Superuser is the role initdb creates; it logs in over the socket without a
// password (trust).
const Superuser = "golb"

// PasswordUser is a role that must log in with Password (scram-sha-256), for
// tests of a wrong password.
const (
	PasswordUser = "pwuser"
	Password     = "right-password"
)

// Server is one private PostgreSQL.
type Server struct {
	// Dir holds the data directory, the socket and the log.
	Dir string
	// SocketDir is where the server's socket .s.PGSQL.5432 is.
	SocketDir string
	// Version is the server's major version ("15").
	Version string

	bin  string
	cred *syscall.Credential
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

var shared struct {
	once sync.Once
	s    *Server
	err  error
}

var dbSeq atomic.Int64

// Shared returns this test binary's server, started on first use; t is
// skipped with the reason when it cannot start (or failed when
// $GOLB_REQUIRE names postgres). Call StopShared from TestMain.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.s, shared.err = Start() })
	if shared.err != nil {
		SkipOrFail(t, shared.err)
	}
	return shared.s
}

// StopShared stops the shared server, if one was started, and removes its
// directory.
func StopShared() error {
	if shared.s == nil {
		return nil
	}
	return shared.s.Close()
}

// Private starts a server of t's own (for a test that stops and starts it),
// closed when t ends; t is skipped or failed as by Shared.
func Private(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		SkipOrFail(t, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stopping the private postgres: %v", err)
		}
	})
	return s
}

// Required reports whether $GOLB_REQUIRE (a comma list) names postgres.
func Required() bool { return testutil.Required("postgres") }

// SkipOrFail skips t because PostgreSQL cannot be used, or fails it when
// $GOLB_REQUIRE names postgres, as CI sets it.
func SkipOrFail(t testing.TB, why error) {
	t.Helper()
	testutil.SkipOrFail(t, "postgres", fmt.Errorf("no private PostgreSQL: %w", why))
}

// BinDir finds the server binaries: $GOLB_PG_BIN, else the newest
// /usr/lib/postgresql/N/bin (Debian's versioned directory), else initdb on
// PATH.
func BinDir() (string, error) {
	if d := os.Getenv("GOLB_PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries (initdb, postgres) in /usr/lib/postgresql/*/bin or on PATH: apt-get install postgresql-15, or set GOLB_PG_BIN")
}

// Start runs initdb into a new temp directory and starts a server on a unix
// socket there, waiting until it accepts connections.
func Start() (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("no %s in %s: %w", b, bin, err)
		}
	}
	cred, err := serverUser()
	if err != nil {
		return nil, err
	}
	// A short path: unix socket paths are limited to 107 bytes.
	base := os.TempDir()
	if len(base) > 40 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "golb-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, SocketDir: dir, bin: bin, cred: cred, log: filepath.Join(dir, "postgres.log")}
	if err := s.initdb(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.Start(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.exec(context.Background(), "postgres",
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", PasswordUser, Password)); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// serverUser is who initdb and postgres run as: nil (this process's user)
// unless root, then postgres, else nobody.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, errors.New("running as root, and there is no postgres or nobody user to run initdb as (it refuses root)")
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir
	// The child dies with this test binary, even when it is SIGKILLed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: s.cred}
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	return cmd
}

func (s *Server) initdb() error {
	if s.cred != nil {
		if err := os.Chown(s.Dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("handing %s to the server's user: %w", s.Dir, err)
		}
	}
	cmd := s.command("initdb", "-D", filepath.Join(s.Dir, "data"), "-U", Superuser, "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(string(out)))
	}
	hba := fmt.Sprintf("local all %s trust\nlocal all all scram-sha-256\n", Superuser)
	if err := os.WriteFile(filepath.Join(s.Dir, "data", "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return err
	}
	if s.cred != nil {
		_ = os.Chown(filepath.Join(s.Dir, "data", "pg_hba.conf"), int(s.cred.Uid), int(s.cred.Gid))
	}
	if v, err := os.ReadFile(filepath.Join(s.Dir, "data", "PG_VERSION")); err == nil {
		s.Version = strings.TrimSpace(string(v))
	}
	return nil
}

// Start starts the server (again, after Stop) and waits until it accepts
// connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("postgres is already running")
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		return err
	}
	defer logf.Close()
	if s.cred != nil {
		_ = os.Chown(s.log, int(s.cred.Uid), int(s.cred.Gid))
	}
	cmd := s.command("postgres", "-D", filepath.Join(s.Dir, "data"),
		"-c", "listen_addresses=", "-c", "unix_socket_directories="+s.SocketDir, "-p", "5432",
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "shared_buffers=16MB",
		"-c", "max_connections=60", "-c", "logging_collector=off")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("postgres exited at start: %s", s.LogTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not accept connections within 60s: %v: %s", err, s.LogTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down (fast: open sessions are ended) and waits for it.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	s.cmd = nil
	return nil
}

// Close stops the server and removes its directory.
func (s *Server) Close() error {
	err := s.Stop()
	return errors.Join(err, os.RemoveAll(s.Dir))
}

// LogTail is the end of the server's log, for a failure message.
func (s *Server) LogTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// DSN is a libpq URL for database db as the superuser, over the socket.
func (s *Server) DSN(db string) string {
	return s.DSNAs(Superuser, "", db)
}

// DSNAs is a libpq URL for database db as user with password (none if "").
func (s *Server) DSNAs(user, password, db string) string {
	u := url.URL{Scheme: "postgres", Path: "/" + db}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	q := url.Values{"host": {s.SocketDir}, "port": {"5432"}, "sslmode": {"disable"}}
	u.RawQuery = q.Encode()
	return u.String()
}

// NewDatabase creates an empty database for t, dropped when t ends, and
// returns its DSN.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	if err := s.exec(context.Background(), "postgres", "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return s.DSN(name)
}

// Exec runs sql on database db as the superuser.
func (s *Server) Exec(t testing.TB, db, sql string) {
	t.Helper()
	if err := s.exec(context.Background(), db, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (s *Server) exec(ctx context.Context, db, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN(db))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql)
	return err
}
