package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// static holds the page: index.html, app.js (its own canvas charts) and
// style.css. No build step; nothing is fetched from elsewhere.
//
//go:embed static/index.html static/app.js static/style.css
var static embed.FS

// csp lets the page load its own files and talk to its own origin only.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		refuse(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Security-Policy", csp)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

func (s *Server) staticHandler() http.Handler {
	sub, _ := fs.Sub(static, "static")
	files := http.StripPrefix("/dashboard/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // the three files, no listing
			return
		}
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// PageWeight is the bytes of the page's files (HTML, JS and CSS), as served
// without compression.
func PageWeight() (html, js, css int) {
	n := func(name string) int {
		b, _ := static.ReadFile("static/" + name)
		return len(b)
	}
	return n("index.html"), n("app.js"), n("style.css")
}
