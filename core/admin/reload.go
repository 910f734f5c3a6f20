package admin

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// reloadTimeout bounds one POST /v1/reload.
const reloadTimeout = 2 * time.Minute

// serveReload is POST /v1/reload: 200 when applied (or nothing to do), 422
// when the file is invalid or a change is refused, 503 while golb starts or
// stops. Each answers with the reload's answer, errors included.
func (api *API) serveReload(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), reloadTimeout)
	defer cancel()
	// A reload may take longer than the server's WriteTimeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(reloadTimeout + 10*time.Second))
	ans, err := api.views.Reload(ctx)
	status := http.StatusOK
	switch {
	case errors.Is(err, ErrUnavailable):
		status = http.StatusServiceUnavailable
	case err != nil:
		status = http.StatusUnprocessableEntity
	}
	writeJSON(w, status, ans)
}
