package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Route is one method and ServeMux pattern the server answers, as
// registered: "{id}" wildcards as in the OpenAPI document, and a pattern
// ending in "/" standing for the whole subtree below it. Method is empty
// for a handler registered for every method (it sorts methods out itself).
type Route struct {
	Method  string
	Pattern string
}

// routeMux is the server's ServeMux, remembering what is registered on it
// (through route, or directly with Handle) so that Routes can list it.
type routeMux struct {
	*http.ServeMux
	routes []Route
}

// Handle registers a handler like http.ServeMux.Handle and records it; a
// pattern may start with a method ("GET /x").
func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	m.routes = append(m.routes, Route{Method: method, Pattern: strings.TrimSpace(path)})
}

// HandleFunc is Handle for a function.
func (m *routeMux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// Routes lists what the router serves (HEAD and OPTIONS, answered on every
// route, are not listed; nor is the not-found fallback), sorted, so that a
// test can hold the OpenAPI document to it.
func (s *Server) Routes() []Route {
	out := slices.Clone(s.mux.routes)
	slices.SortFunc(out, func(a, b Route) int {
		if c := strings.Compare(a.Pattern, b.Pattern); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	return out
}

// openAPIDoc is the served API description and its entity tag.
type openAPIDoc struct {
	body []byte
	etag string
}

func newOpenAPIDoc(body []byte) openAPIDoc {
	sum := sha256.Sum256(body)
	return openAPIDoc{body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// serveOpenAPI answers GET /openapi.json. The document changes only with
// the binary, so caches may keep it a while and revalidate by ETag.
func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) error {
	if len(s.openapi.body) == 0 {
		return &requestError{http.StatusNotFound, "not_found", "No such endpoint."}
	}
	h := w.Header()
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("ETag", s.openapi.etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagListMatches(inm, s.openapi.etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(s.openapi.body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(s.openapi.body)
	return nil
}

func etagListMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
