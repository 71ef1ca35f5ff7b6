package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/gatehouse/gatehouse/oauth2"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/httpapi"
	"github.com/gatehouse/gatehouse/metrics"
	"github.com/gatehouse/gatehouse/openapi"
)

// routerWithDocument builds a server with every optional route on (the
// account page, /metrics on the public handler) and the embedded document.
func routerWithDocument(t *testing.T) (*httpapi.Server, []byte) {
	t.Helper()
	doc, err := openapi.JSON()
	if err != nil {
		t.Fatalf("assembling the document: %v", err)
	}
	srv := httpapi.New(httpapi.Config{Issuer: "http://gatehouse.test"}, httpapi.Deps{
		Metrics: metrics.New(func() (int, int) { return 0, 0 }),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:   func(context.Context) error { return nil },
		Account: http.NotFoundHandler(),
		OpenAPI: doc,
		OAuth:   &httpapi.OAuthMount{Handler: http.NotFoundHandler(), Routes: oauthRoutes()},
	})
	return srv, doc
}

// documentOperations reads "METHOD /path" of every operation of the document.
func documentOperations(t *testing.T, doc []byte) map[string]bool {
	t.Helper()
	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	ops := map[string]bool{}
	for p, item := range d.Paths {
		for m := range item {
			switch m {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				ops[strings.ToUpper(m)+" "+p] = true
			}
		}
	}
	return ops
}

// muxWildcard turns ServeMux wildcards into OpenAPI's: "{name...}" is
// "{name}", and "{$}" (the exact end) disappears.
var muxWildcard = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}`)

func openAPIPath(pattern string) string {
	pattern = strings.TrimSuffix(pattern, "{$}")
	return muxWildcard.ReplaceAllString(pattern, "{$1}")
}

// TestRoutesDescribed fails when the router serves a method and path that
// the OpenAPI document does not describe, and when the document describes
// one the router does not serve. A route registered for any method, or a
// subtree ("/account/"), needs at least one operation in the document.
func TestRoutesDescribed(t *testing.T) {
	srv, doc := routerWithDocument(t)
	ops := documentOperations(t, doc)
	routes := srv.Routes()
	if len(routes) < 30 {
		t.Fatalf("Routes() lists only %d routes: %v", len(routes), routes)
	}
	served := map[string]bool{} // document operations some route serves
	for _, r := range routes {
		p := openAPIPath(r.Pattern)
		if !strings.HasPrefix(p, "/") {
			t.Errorf("route %q: a host-specific pattern cannot be described; register it by path", r.Pattern)
			continue
		}
		subtree := strings.HasSuffix(p, "/") && p != "/"
		matched := false
		for op := range ops {
			m, path, _ := strings.Cut(op, " ")
			samePath := path == p || (subtree && strings.HasPrefix(path, p))
			if samePath && (r.Method == "" || r.Method == m) {
				matched = true
				served[op] = true
			}
		}
		switch {
		case matched:
		case r.Method == "":
			t.Errorf("the router serves %s (any method) but the OpenAPI document has no operation for it", r.Pattern)
		default:
			t.Errorf("the router serves %s %s but the OpenAPI document does not describe it (add it to openapi/spec/paths/)", r.Method, p)
		}
	}
	for op := range ops {
		if !served[op] {
			t.Errorf("the OpenAPI document describes %s but the router does not serve it", op)
		}
	}
}

func TestRoutesListsRegistrations(t *testing.T) {
	srv, _ := routerWithDocument(t)
	routes := srv.Routes()
	for _, want := range []httpapi.Route{
		{Method: "POST", Pattern: "/auth/login"},
		{Method: "DELETE", Pattern: "/auth/sessions/{id}"},
		{Method: "GET", Pattern: "/openapi.json"},
		{Method: "DELETE", Pattern: "/auth/mfa/totp"},
		{Method: "POST", Pattern: "/auth/mfa/totp"},
		{Method: "", Pattern: "/account/"},
	} {
		if !slices.Contains(routes, want) {
			t.Errorf("Routes() lacks %+v", want)
		}
	}
	for _, r := range routes {
		if r.Pattern == "/" {
			t.Errorf("Routes() lists the not-found fallback: %+v", r)
		}
	}
}

func TestServeOpenAPI(t *testing.T) {
	srv, doc := routerWithDocument(t)
	h := srv.Handler()
	get := func(hdr map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/openapi.json", nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := get(nil)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if !bytes.Equal(w.Body.Bytes(), doc) {
		t.Errorf("GET /openapi.json did not serve the assembled document")
	}
	if cc := w.Header().Get("Cache-Control"); !strings.Contains(cc, "max-age=") || strings.Contains(cc, "no-store") {
		t.Errorf("Cache-Control = %q, want a cacheable answer", cc)
	}
	etag := w.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if w := get(map[string]string{"If-None-Match": etag}); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("If-None-Match with the ETag: %d (%d bytes), want 304 and no body", w.Code, w.Body.Len())
	}
	if w := get(map[string]string{"If-None-Match": `"other"`}); w.Code != http.StatusOK {
		t.Errorf("If-None-Match with another ETag: %d, want 200", w.Code)
	}
	r := httptest.NewRequest("POST", "/openapi.json", nil)
	pw := httptest.NewRecorder()
	h.ServeHTTP(pw, r)
	if pw.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /openapi.json: %d, want 405", pw.Code)
	}
}

func oauthRoutes() []httpapi.Route {
	var out []httpapi.Route
	for _, r := range oauth2.Routes() {
		out = append(out, httpapi.Route{Method: r[0], Pattern: r[1]})
	}
	return out
}
