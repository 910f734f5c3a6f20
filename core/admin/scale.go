package admin

import (
	"encoding/json"
	"errors"
	"net/http"
)

// maxScaleBody bounds POST /v1/groups/NAME/scale's body.
const maxScaleBody = 4096

// serveScale is POST /v1/groups/{name}/scale with {"count": N}: 200 with
// the group and its desired count (and floor_until for an autoscaled
// group: the floor lasts one stable window), 400 for another body, 404 for
// an unknown group, 422 for a count out of its bounds.
func (api *API) serveScale(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Count *int `json:"count"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxScaleBody)).Decode(&req); err != nil || req.Count == nil {
		refuse(w, http.StatusBadRequest, `body must be {"count": N}`)
		return
	}
	name := r.PathValue("name")
	until, err := api.views.Scale(name, *req.Count)
	switch {
	case errors.Is(err, ErrNoGroup):
		refuse(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrOutOfBounds):
		refuse(w, http.StatusUnprocessableEntity, err.Error())
	case err != nil:
		refuse(w, http.StatusInternalServerError, err.Error())
	default:
		out := map[string]any{"group": name, "desired": *req.Count}
		if !until.IsZero() {
			out["floor_until"] = until
		}
		writeJSON(w, http.StatusOK, out)
	}
}
