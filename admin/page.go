package admin

import (
	"embed"
	"net/http"
	"path"
)

// web holds the operations page: plain HTML, CSS and JavaScript, no build
// step, nothing loaded from elsewhere.
//
//go:embed web/index.html web/app.js web/style.css
var web embed.FS

var pageTypes = map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8"}

// page serves the page's files. The Content-Security-Policy lets the page
// load only its own script and style and talk only to this server: the
// SIP messages it shows come from anyone on the network, and the page
// puts them in the document as text, never as markup, but the policy
// would stop an injected script all the same.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path
	if name == "/" {
		name = "/index.html"
	}
	b, err := web.ReadFile("web" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", pageTypes[path.Ext(name)])
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Write(b)
}
