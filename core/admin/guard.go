package admin

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
)

// Guard keeps other web pages out of the admin API while letting its own
// page in. A browser reaches 127.0.0.1 on its user's behalf, so:
//   - a request with an Origin is refused unless that Origin is the admin
//     API's own: http:// and the address it listens on (addr), or the Host
//     the request names when that is the same port by IP or localhost (a
//     page loaded from http://localhost:PORT/). A cross-site form or fetch
//     (CSRF) carries its own site's Origin and is refused;
//   - a Host that is not an IP or localhost is refused: a DNS name that
//     rebinds to 127.0.0.1 would make an attacker's page same-origin;
//   - a POST must be application/json, which a page can send elsewhere
//     only after a CORS preflight that golb never answers.
//
// Its own answers set no CORS headers, and frames are refused.
func Guard(addr string, next http.Handler) http.Handler {
	_, port, _ := net.SplitHostPort(addr)
	own := "http://" + addr
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, hostPort, err := net.SplitHostPort(r.Host)
		if err != nil {
			host, hostPort = r.Host, ""
		}
		local := host == "localhost" || net.ParseIP(strings.Trim(host, "[]")) != nil
		origin := r.Header.Get("Origin")
		switch {
		case !local:
			refuse(w, http.StatusForbidden, "address the admin API by IP or localhost")
			return
		case origin != "" && origin != own && (origin != "http://"+r.Host || hostPort != port):
			refuse(w, http.StatusForbidden, "the admin API answers its own page only, not "+origin)
			return
		case r.Method == http.MethodPost && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
			refuse(w, http.StatusUnsupportedMediaType, "send Content-Type: application/json")
			return
		}
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

func refuse(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
