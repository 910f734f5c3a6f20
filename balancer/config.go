package balancer

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Policy names accepted in Config.Policy (Policies lists them).
const (
	PolicyRoundRobin    = "round_robin"
	PolicyLeastRequests = "least_requests"
	PolicyRandom        = "random"
	PolicyP2C           = "p2c"
)

// RetryOn5xx is the Config.RetryOn value that also retries 5xx answers.
const RetryOn5xx = "5xx"

// Backend is one worker the balancer may send requests to.
type Backend struct {
	ID      string // worker id, unique within the balancer
	Address string // host:port, e.g. "127.0.0.1:6001"
}

// HealthCheck configures active health checking. A backend is a candidate
// for traffic only after Rise consecutive passing checks, and stops being
// one after Fall consecutive failures. A check passes on a 2xx or 3xx answer
// within Timeout.
type HealthCheck struct {
	// Path is requested with GET. Default "/healthz". Must start with "/".
	Path string
	// Interval between checks of one backend. Default 5s. A negative
	// Interval disables active checks: every backend is healthy as soon as
	// it is added (passive ejection still applies).
	Interval time.Duration
	// Timeout of one check. Default 1s. Must not exceed Interval.
	Timeout time.Duration
	// Rise is the number of consecutive passes to become healthy. Default 1:
	// a new backend gets traffic only after its first passing check.
	Rise int
	// Fall is the number of consecutive failures to become unhealthy. Default 2.
	Fall int
}

// Config configures one Balancer. A zero field means its documented
// default, except in the three fields that say "0 means none" (Retries,
// BodyMinRate, DrainTimeout): there 0 turns the feature off, as it does in
// golb's config, and a negative value is invalid. DefaultConfig returns
// every field at its default, those three included. The other fields that
// can be turned off (RetryMinPerSec, the ejection thresholds, active health
// checks) take a negative value for it.
type Config struct {
	// Name labels metrics and logs, and appears in error bodies. Required.
	Name string
	// BindAddr is the IP the listeners bind. Default "127.0.0.1".
	BindAddr string
	// Port is the first listener port; listener i binds Port+i. Port 0 gives
	// every listener its own ephemeral port (see Addrs).
	Port int
	// Listeners is the number of listeners (the seed's "pool"). Default 1.
	// Port+Listeners-1 must not exceed 65535.
	Listeners int
	// Policy is round_robin (default), least_requests, random or p2c.
	Policy string

	// Retries is the number of extra attempts, each on a worker not tried
	// yet for this request. 0 means none (DefaultConfig: 1); must not be
	// negative. A request
	// is retried when the connection failed before it was sent (any method,
	// the body is untouched), or when the connection broke before any
	// answer arrived and the request is idempotent and has no body (as
	// nginx's proxy_next_upstream error does).
	Retries int
	// RetryOn widens retries: "5xx" also retries 5xx answers, only for
	// idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE) without a body.
	// A body a worker may have received is never sent again.
	RetryOn []string
	// RetryBudget caps retries at this fraction of requests over a sliding
	// 10s window. Default 0.2; must be in (0, 1].
	RetryBudget float64
	// RetryMinPerSec is a floor added to the budget so that a quiet
	// balancer can still retry. Default 10 retries per second; negative
	// means no floor.
	RetryMinPerSec int

	// Health configures active health checking.
	Health HealthCheck

	// EjectAfterConnFailures ejects a worker after this many consecutive
	// connection failures (dial error, reset, refused). Default 1; negative
	// disables.
	EjectAfterConnFailures int
	// Eject5xx ejects a worker after this many consecutive 5xx answers.
	// Default 5; negative disables.
	Eject5xx int
	// EjectBase is the first ejection period. Default 5s. Each further
	// ejection doubles it up to EjectMax; the doubling resets once the
	// worker has gone EjectMax without being ejected. If ejection would
	// leave no candidate while some worker passes its health checks,
	// ejection is ignored until one comes back (panic mode, as in Envoy).
	EjectBase time.Duration
	// EjectMax caps the ejection period. Default 60s; must be >= EjectBase.
	EjectMax time.Duration

	// DialTimeout bounds connecting to a worker. Default 2s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a worker's response headers
	// once the request is sent. Default 60s. A timeout answers 504, counts
	// as a failed attempt, and is neither retried nor a reason to eject (a
	// slow worker is not a dead one).
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes idle keep-alive connections to workers.
	// Default 30s (below the built-in worker's 60 s keep-alive).
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost sizes the keep-alive pool per worker. Default 256.
	MaxIdleConnsPerHost int

	// MaxHeaderBytes bounds a request's head (request line and header
	// fields). Default 64 KiB. A larger head is answered 431 and the
	// connection closed.
	MaxHeaderBytes int
	// HeaderReadTimeout bounds reading a request head once its first byte
	// arrived (slowloris), and a new connection's wait for its first
	// request. Default 10s; then 408 (or, with nothing received, a close).
	HeaderReadTimeout time.Duration
	// IdleTimeout closes a client's keep-alive connection that sends no
	// new request for this long, and bounds how long a write to a client
	// (or a worker) that reads nothing may wait. Default 120s.
	IdleTimeout time.Duration
	// BodyReadTimeout is the longest pause between two reads of a request
	// body, and the grace before BodyMinRate applies. Default 10s; then
	// 408, the connection closed, and no worker charged.
	BodyReadTimeout time.Duration
	// BodyMinRate is the average rate, in bytes a second, below which a
	// request body is cut off once BodyReadTimeout has passed. 0 means none:
	// no rate check (DefaultConfig: 1024); must not be negative.
	BodyMinRate int
	// TunnelIdleTimeout closes an upgraded connection (WebSocket) on which
	// neither side sent a byte for this long. Default 1h, HAProxy's advice
	// for its "timeout tunnel": far above any WebSocket ping interval. A
	// write into a tunnel waits at most IdleTimeout for a side that reads
	// nothing.
	TunnelIdleTimeout time.Duration

	// TrustForwardedHeaders keeps a client's forwarding headers (for a
	// trusted proxy in front of golb): its X-Forwarded-For chain is
	// appended to, its X-Forwarded-Host and X-Forwarded-Proto stand in for
	// golb's own, and X-Real-Ip, Forwarded and the other X-Forwarded-*
	// pass on. Default false: like Traefik, a client's forwarding headers
	// are dropped (golb sets X-Forwarded-For, -Host and -Proto itself),
	// since anyone can forge them. Names spelt with underscores are
	// dropped either way.
	TrustForwardedHeaders bool

	// DrainTimeout bounds Shutdown's wait for in-flight requests when the
	// caller's context has no earlier deadline. 0 means none: Shutdown
	// closes every connection at once (DefaultConfig: 10s); must not be
	// negative.
	DrainTimeout time.Duration

	// watchAfter, when set, replaces the const watchAfter (forward.go):
	// tests make the first watch deadline pass before a request is sent.
	watchAfter time.Duration

	// Hold holds requests while no worker is a candidate (hold.go).
	// Default: off, such a request is answered 503 at once.
	Hold Hold

	// Local maps exact paths that golb answers itself on every listener
	// (e.g. "/worker/stats"); such requests are not proxied nor counted.
	Local map[string]http.Handler

	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every field at its default; set Name
// (and what else differs) before New. Its Health.Timeout is 1s: a shorter
// Health.Interval needs a Timeout no longer than itself.
func DefaultConfig() Config {
	c := Config{Retries: 1, BodyMinRate: 1024, DrainTimeout: 10 * time.Second}
	return c.withDefaults()
}

// withDefaults returns a copy of c with every zero field that means "the
// default" set to it (not Retries, BodyMinRate and DrainTimeout, whose 0
// means none).
func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = "127.0.0.1"
	}
	if c.Listeners == 0 {
		c.Listeners = 1
	}
	if c.Policy == "" {
		c.Policy = PolicyRoundRobin
	}
	if c.RetryBudget == 0 {
		c.RetryBudget = 0.2
	}
	if c.RetryMinPerSec == 0 {
		c.RetryMinPerSec = 10
	}
	h := &c.Health
	if h.Path == "" {
		h.Path = "/healthz"
	}
	if h.Interval == 0 {
		h.Interval = 5 * time.Second
	}
	if h.Timeout == 0 {
		h.Timeout = time.Second
		if h.Interval > 0 && h.Interval < h.Timeout {
			h.Timeout = h.Interval
		}
	}
	if h.Rise == 0 {
		h.Rise = 1
	}
	if h.Fall == 0 {
		h.Fall = 2
	}
	if c.EjectAfterConnFailures == 0 {
		c.EjectAfterConnFailures = 1
	}
	if c.Eject5xx == 0 {
		c.Eject5xx = 5
	}
	if c.EjectBase == 0 {
		c.EjectBase = 5 * time.Second
	}
	if c.EjectMax == 0 {
		c.EjectMax = 60 * time.Second
		if c.EjectBase > c.EjectMax {
			c.EjectMax = c.EjectBase
		}
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.ResponseHeaderTimeout == 0 {
		c.ResponseHeaderTimeout = 60 * time.Second
	}
	if c.IdleConnTimeout == 0 {
		// Below the built-in worker's 60 s keep-alive, so the balancer
		// closes an idle connection before the worker does and never
		// writes a request into one the worker just closed.
		c.IdleConnTimeout = 30 * time.Second
	}
	if c.MaxIdleConnsPerHost == 0 {
		c.MaxIdleConnsPerHost = 256
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.HeaderReadTimeout == 0 {
		c.HeaderReadTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.BodyReadTimeout == 0 {
		c.BodyReadTimeout = 10 * time.Second
	}
	if c.TunnelIdleTimeout == 0 {
		c.TunnelIdleTimeout = time.Hour
	}
	return c
}

// Validate reports the first invalid or conflicting field, wrapping one of
// the sentinel errors. Zero values are valid: they mean the default, or
// none.
func (c Config) Validate() error {
	if c.Name == "" {
		return ErrMissingName
	}
	d := c.withDefaults()
	if err := c.Hold.validate(); err != nil {
		return err
	}
	if d.BindAddr != "localhost" && net.ParseIP(d.BindAddr) == nil {
		return fmt.Errorf("%w: %q is not an IP address", ErrInvalidBindAddr, c.BindAddr)
	}
	if d.Listeners < 0 {
		return fmt.Errorf("%w: %d (must be at least 1)", ErrInvalidListeners, c.Listeners)
	}
	if d.Port < 0 || d.Port > 65535 {
		return fmt.Errorf("%w: %d (must be 0..65535)", ErrInvalidPort, c.Port)
	}
	if d.Port != 0 && d.Port+d.Listeners-1 > 65535 {
		return fmt.Errorf("%w: %d listeners from port %d run past 65535", ErrInvalidPort, d.Listeners, d.Port)
	}
	if _, err := newSelector(d.Policy); err != nil {
		return err
	}
	if d.Retries < 0 {
		return fmt.Errorf("%w: retries %d is negative (0 means none)", ErrInvalidRetry, c.Retries)
	}
	for _, v := range d.RetryOn {
		if v != RetryOn5xx {
			return fmt.Errorf("%w: retry_on %q (known: %q)", ErrInvalidRetry, v, RetryOn5xx)
		}
	}
	if d.RetryBudget < 0 || d.RetryBudget > 1 {
		return fmt.Errorf("%w: retry budget %v (must be in (0, 1])", ErrInvalidRetry, c.RetryBudget)
	}
	h := d.Health
	if len(h.Path) == 0 || h.Path[0] != '/' {
		return fmt.Errorf("%w: path %q must start with /", ErrInvalidHealthCheck, c.Health.Path)
	}
	// The probe's request line is GET PATH: a space, a control byte or a
	// fragment would break it or be dropped, and a path the probe cannot
	// build a request for (/%zz) never lets a worker become healthy.
	for i := 0; i < len(h.Path); i++ {
		if b := h.Path[i]; b <= ' ' || b == 0x7f || b == '#' {
			return fmt.Errorf("%w: path %q has %q at byte %d (escape it, e.g. %%20 for a space)", ErrInvalidHealthCheck, h.Path, b, i)
		}
	}
	if _, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:1"+h.Path, nil); err != nil {
		return fmt.Errorf("%w: path %q is no request target: %v", ErrInvalidHealthCheck, h.Path, err)
	}
	if h.Timeout < 0 {
		return fmt.Errorf("%w: timeout %v is negative", ErrInvalidHealthCheck, c.Health.Timeout)
	}
	if h.Interval > 0 && h.Timeout > h.Interval {
		return fmt.Errorf("%w: timeout %v exceeds interval %v", ErrInvalidHealthCheck, h.Timeout, h.Interval)
	}
	if h.Rise < 0 || h.Fall < 0 {
		return fmt.Errorf("%w: rise %d and fall %d must be positive", ErrInvalidHealthCheck, c.Health.Rise, c.Health.Fall)
	}
	if d.EjectBase < 0 || d.EjectMax < 0 {
		return fmt.Errorf("%w: ejection periods must be positive", ErrInvalidEjection)
	}
	if d.EjectBase > d.EjectMax {
		return fmt.Errorf("%w: eject base %v exceeds eject max %v", ErrInvalidEjection, d.EjectBase, d.EjectMax)
	}
	for _, t := range []struct {
		name string
		v    time.Duration
	}{
		{"dial timeout", d.DialTimeout},
		{"response header timeout", d.ResponseHeaderTimeout},
		{"idle connection timeout", d.IdleConnTimeout},
		{"drain timeout", d.DrainTimeout},
		{"header read timeout", d.HeaderReadTimeout},
		{"idle timeout", d.IdleTimeout},
		{"body read timeout", d.BodyReadTimeout},
		{"tunnel idle timeout", d.TunnelIdleTimeout},
	} {
		if t.v < 0 {
			return fmt.Errorf("%w: %s %v is negative", ErrInvalidTransport, t.name, t.v)
		}
	}
	if d.MaxHeaderBytes < 1024 || d.MaxHeaderBytes > 1<<20 {
		return fmt.Errorf("%w: max header bytes %d (must be 1 KiB..1 MiB)", ErrInvalidLimit, c.MaxHeaderBytes)
	}
	if d.BodyMinRate < 0 {
		return fmt.Errorf("%w: body min rate %d is negative (0 means none)", ErrInvalidLimit, c.BodyMinRate)
	}
	if d.MaxIdleConnsPerHost < 0 {
		return fmt.Errorf("%w: max idle connections per host %d is negative", ErrInvalidTransport, c.MaxIdleConnsPerHost)
	}
	for p, h := range d.Local {
		if len(p) == 0 || p[0] != '/' || h == nil {
			return fmt.Errorf("%w: %q (must start with / and have a handler)", ErrInvalidLocalPath, p)
		}
	}
	return nil
}

// retryOn5xx reports whether RetryOn asks for 5xx retries.
func (c Config) retryOn5xx() bool {
	for _, v := range c.RetryOn {
		if v == RetryOn5xx {
			return true
		}
	}
	return false
}
