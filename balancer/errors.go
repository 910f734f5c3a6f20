package balancer

import "errors"

// Sentinel errors. Validate and Start wrap them with the offending value, so
// callers test with errors.Is and users read the detail.
var (
	// ErrMissingName: Config.Name is empty; it labels metrics and logs.
	ErrMissingName = errors.New("balancer name is required")
	// ErrUnknownPolicy: Config.Policy is not one of the known policies.
	ErrUnknownPolicy = errors.New("unknown selection policy")
	// ErrInvalidPort: Config.Port, or Port+Listeners-1, is outside 0..65535.
	ErrInvalidPort = errors.New("invalid listener port")
	// ErrInvalidListeners: Config.Listeners is negative.
	ErrInvalidListeners = errors.New("invalid listener count")
	// ErrInvalidBindAddr: Config.BindAddr is not an IP address or "localhost".
	ErrInvalidBindAddr = errors.New("invalid bind address")
	// ErrInvalidRetry: Retries, RetryOn or the retry budget is out of range.
	ErrInvalidRetry = errors.New("invalid retry setting")
	// ErrInvalidHealthCheck: a HealthCheck field is out of range or conflicts with another.
	ErrInvalidHealthCheck = errors.New("invalid health check")
	// ErrInvalidEjection: a passive-ejection field is out of range or conflicts with another.
	ErrInvalidEjection = errors.New("invalid passive ejection setting")
	// ErrInvalidTransport: a proxy timeout, the drain timeout or the
	// keep-alive pool size is negative.
	ErrInvalidTransport = errors.New("invalid proxy transport setting")
	// ErrInvalidLimit: MaxHeaderBytes is outside 1 KiB..1 MiB, or BodyMinRate is negative.
	ErrInvalidLimit = errors.New("invalid HTTP limit")
	// ErrInvalidLocalPath: a Config.Local path does not start with "/" or has a nil handler.
	ErrInvalidLocalPath = errors.New("invalid local handler path")
	// ErrInvalidHold: a Hold field is negative.
	ErrInvalidHold = errors.New("invalid hold setting")
	// ErrInvalidBackend: a Backend passed to SetBackends has no ID or no address, or an ID repeats.
	ErrInvalidBackend = errors.New("invalid backend")

	// ErrListen: Start could not bind one of the listeners; the error names the address.
	ErrListen = errors.New("cannot bind listener")
	// ErrAlreadyStarted: Start was called twice.
	ErrAlreadyStarted = errors.New("balancer already started")
	// ErrClosed: the balancer was shut down and cannot be started again.
	ErrClosed = errors.New("balancer is shut down")
	// ErrUnknownBackend: WaitIdle was asked about an ID the balancer never
	// saw, or forgot (removed, idle, and never counted an attempt).
	ErrUnknownBackend = errors.New("unknown backend")
)
