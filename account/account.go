// Package account serves Gatehouse's self-service account page: a static
// HTML/CSS/JS bundle embedded into the binary. The JavaScript is built from
// clients/web (npm run build) and committed under static/, so `go build`
// never needs Node.
package account

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed static
var staticFS embed.FS

// CSP is the Content-Security-Policy sent with every response of the page.
// No inline script or style is used anywhere, so nothing needs 'unsafe-inline'.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

type asset struct {
	body        []byte
	contentType string
	etag        string
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".map":  "application/json; charset=utf-8",
}

// pageRoutes are the paths below /account that serve the page itself: the
// targets of the links Gatehouse mails (<public-url>/account/<action>#token=...).
// The token stays in the URL fragment, which browsers never send, so these
// requests carry nothing secret; the page reads and removes it.
var pageRoutes = map[string]bool{
	"verify-email":   true,
	"reset-password": true,
	"magic-link":     true,
	"change-email":   true,
}

type handler struct {
	assets map[string]asset // keyed by name relative to static/, e.g. "app.js"
}

// Handler returns the handler for the account page. Mount it at both
// "/account" and "/account/"; it also works behind http.StripPrefix("/account", ...).
// "/account", "/account/" and the mail-link paths ("/account/verify-email",
// "/account/reset-password", "/account/magic-link", "/account/change-email")
// serve index.html; "/account/<file>" serves the embedded asset. Only GET and
// HEAD are allowed.
func Handler() http.Handler {
	h := &handler{assets: map[string]asset{}}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return nil // never serve files of unknown type
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h.assets[p] = asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", CSP)
	name := strings.TrimPrefix(r.URL.Path, "/account")
	name = strings.TrimPrefix(name, "/")
	if name == "" || pageRoutes[name] {
		name = "index.html"
	}
	a, ok := h.assets[name]
	if !ok || strings.Contains(name, "..") {
		problem(w, http.StatusNotFound, "Not found", "No such resource.", "not_found")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		problem(w, http.StatusMethodNotAllowed, "Method not allowed", "This method is not allowed on this endpoint.", "method_not_allowed")
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("X-Content-Type-Options", "nosniff")
	// Asset names are not content-hashed, so everything is revalidated (cheaply, via ETag).
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", a.etag)
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(a.body)
	}
}

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// problem writes the same RFC 9457 body as the rest of the API (httpapi),
// whose package this one does not import to stay a leaf.
func problem(w http.ResponseWriter, status int, title, detail, code string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"type":"https://gatehouse.dev/problems/` + code + `","title":"` + title + `","status":` +
		strconv.Itoa(status) + `,"detail":"` + detail + `","code":"` + code + `"}`))
}
