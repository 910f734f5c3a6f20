package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Serve listens on addr and serves api and dash there, behind Guard, until
// the returned server is shut down or closed; api's group events include
// the lifecycle events of dash's log. dash runs until Shutdown,
// which also ends its open streams. Errors after the server has started
// are logged to logger (slog.Default() when nil).
func Serve(addr string, api *API, dash *Server, logger *slog.Logger) (*http.Server, error) {
	if logger == nil {
		logger = slog.Default()
	}
	api.lifecycle = dash
	mux := http.NewServeMux()
	api.Register(mux)
	dash.Register(mux) // GET /, /v1/stream, /v1/events, POST /v1/workers/{id}/drain

	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin API: listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: Guard(l.Addr().String(), mux), ReadHeaderTimeout: 5 * time.Second}
	dashCtx, stopDash := context.WithCancel(context.Background())
	srv.RegisterOnShutdown(stopDash)
	go dash.Run(dashCtx)
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin API stopped", "err", err)
		}
	}()
	logger.Info("admin API listening", "addr", l.Addr().String())
	return srv, nil
}
