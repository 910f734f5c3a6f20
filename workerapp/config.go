// Package workerapp is the demo worker service that golb runs behind its balancer
// (`golb worker`): GET /api/v1/hello answers after a random delay and fails at an exact,
// configured rate, GET /healthz reports 503 once the worker drains on shutdown. It reads
// its settings from the environment every driver passes and imports nothing of golb.
package workerapp

import (
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Environment variables read by ConfigFromEnv.
const (
	EnvPort         = "PORT"
	EnvBindAddr     = "BIND_ADDR"
	EnvWorkerID     = "GOLB_WORKER_ID"
	EnvAvgDelay     = "GOLB_AVG_DELAY"
	EnvFailureRate  = "GOLB_FAILURE_RATE"
	EnvDrainTimeout = "GOLB_DRAIN_TIMEOUT"
	EnvAcceptGrace  = "GOLB_ACCEPT_GRACE"
)

// Defaults applied by ConfigFromEnv (and, for zero fields, by New).
const (
	DefaultBindAddr     = "127.0.0.1"
	DefaultAvgDelay     = 500 * time.Millisecond
	DefaultDrainTimeout = 10 * time.Second

	// MaxAvgDelay bounds AvgDelay so that the largest delay, 3·avg/2, cannot overflow.
	MaxAvgDelay = time.Hour
)

// Config holds the worker's settings. The zero value of a field means its default
// unless the field says otherwise.
type Config struct {
	// Port to listen on (PORT). Required, 1..65535.
	Port int
	// BindAddr is the IP address or host name to listen on, without a port
	// (BIND_ADDR). Default "127.0.0.1"; use "0.0.0.0" to listen on every interface.
	BindAddr string
	// WorkerID names the worker in the hello message (GOLB_WORKER_ID).
	// Default: the host name.
	WorkerID string
	// AvgDelay is the mean delay before /api/v1/hello answers; each delay is uniform
	// in [AvgDelay/2, 3·AvgDelay/2] (GOLB_AVG_DELAY, a Go duration). 0..MaxAvgDelay.
	// Zero in the struct means no delay; ConfigFromEnv uses 500ms when unset.
	AvgDelay time.Duration
	// FailureRate is the exact probability that /api/v1/hello answers 500
	// (GOLB_FAILURE_RATE), 0..1: 0 never fails, 1 always fails. Default 0.
	FailureRate float64
	// DrainTimeout bounds how long Run waits for in-flight requests after its context
	// is cancelled (GOLB_DRAIN_TIMEOUT). Default 10s; must be > 0 when set.
	DrainTimeout time.Duration
	// AcceptGrace is how long the worker keeps accepting and serving new requests
	// after shutdown begins while /healthz already answers 503, so that a balancer
	// can take it out of rotation before its listener closes (GOLB_ACCEPT_GRACE).
	// Default 0: stop accepting at once. DrainTimeout starts when the grace ends.
	AcceptGrace time.Duration
}

// ConfigFromEnv reads the settings from getenv (os.Getenv when nil), applies the
// defaults and validates them. Its error is one line naming the variable, e.g.
// `GOLB_FAILURE_RATE "1.5": must be between 0 and 1`, and wraps ErrInvalidConfig.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg := Config{
		BindAddr:     DefaultBindAddr,
		AvgDelay:     DefaultAvgDelay,
		DrainTimeout: DefaultDrainTimeout,
	}

	raw := getenv(EnvPort)
	if raw == "" {
		return Config{}, &SettingError{Setting: EnvPort, Reason: portReason}
	}
	port, err := strconv.Atoi(strings.TrimSpace(raw))
	if err != nil || port < 1 || port > 65535 {
		return Config{}, &SettingError{Setting: EnvPort, Value: raw, Reason: portReason}
	}
	cfg.Port = port

	if v := getenv(EnvBindAddr); v != "" {
		cfg.BindAddr = v
	}
	cfg.WorkerID = getenv(EnvWorkerID)
	if cfg.WorkerID == "" {
		cfg.WorkerID = defaultWorkerID()
	}

	if v := getenv(EnvAvgDelay); v != "" {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return Config{}, &SettingError{Setting: EnvAvgDelay, Value: v, Reason: "not a Go duration (e.g. 500ms, 2s); " + avgDelayReason}
		}
		cfg.AvgDelay = d
	}

	if v := getenv(EnvFailureRate); v != "" {
		r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return Config{}, &SettingError{Setting: EnvFailureRate, Value: v, Reason: "not a number; " + failureRateReason}
		}
		cfg.FailureRate = r
	}

	if v := getenv(EnvDrainTimeout); v != "" {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return Config{}, &SettingError{Setting: EnvDrainTimeout, Value: v, Reason: "must be a positive Go duration (e.g. 10s)"}
		}
		cfg.DrainTimeout = d
	}

	if v := getenv(EnvAcceptGrace); v != "" {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return Config{}, &SettingError{Setting: EnvAcceptGrace, Value: v, Reason: "not a Go duration (e.g. 2s); " + acceptGraceReason}
		}
		cfg.AcceptGrace = d
	}

	if err := cfg.Validate(); err != nil {
		// Report the value as the user wrote it, not as Go formats it.
		if se, ok := err.(*SettingError); ok {
			if v := getenv(se.Setting); v != "" {
				se.Value = v
			}
		}
		return Config{}, err
	}
	return cfg, nil
}

const (
	portReason        = "must be a port number between 1 and 65535"
	avgDelayReason    = "must be between 0s and 1h"
	failureRateReason = "must be between 0 and 1"
	acceptGraceReason = "must not be negative"
)

// Validate checks every field's range; zero fields that have a default are valid.
// The error is a *SettingError naming the environment variable of the field.
func (c Config) Validate() error {
	if c.Port < 1 || c.Port > 65535 {
		return &SettingError{Setting: EnvPort, Value: strconv.Itoa(c.Port), Reason: portReason}
	}
	if c.BindAddr != "" && !validHost(c.BindAddr) {
		return &SettingError{Setting: EnvBindAddr, Value: c.BindAddr,
			Reason: "must be an IP address or host name without a port (e.g. 127.0.0.1, ::1, 0.0.0.0)"}
	}
	if c.AvgDelay < 0 || c.AvgDelay > MaxAvgDelay {
		return &SettingError{Setting: EnvAvgDelay, Value: c.AvgDelay.String(), Reason: avgDelayReason}
	}
	// Written so that NaN fails too.
	if !(c.FailureRate >= 0 && c.FailureRate <= 1) {
		return &SettingError{Setting: EnvFailureRate, Value: strconv.FormatFloat(c.FailureRate, 'g', -1, 64), Reason: failureRateReason}
	}
	if c.DrainTimeout < 0 {
		return &SettingError{Setting: EnvDrainTimeout, Value: c.DrainTimeout.String(), Reason: "must be a positive Go duration (e.g. 10s)"}
	}
	if c.AcceptGrace < 0 {
		return &SettingError{Setting: EnvAcceptGrace, Value: c.AcceptGrace.String(), Reason: acceptGraceReason}
	}
	return nil
}

// validHost accepts an IP literal (v4 or v6, unbracketed) or a plain host name.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) > 253 || strings.ContainsAny(h, ":/[] \t\r\n%@") {
		return false
	}
	return true
}

// withDefaults fills the zero fields that have a default.
func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	if c.WorkerID == "" {
		c.WorkerID = defaultWorkerID()
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	return c
}

func defaultWorkerID() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "worker-" + strconv.Itoa(os.Getpid())
}
