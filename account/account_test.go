package account

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestHandler(t *testing.T) {
	h := Handler()
	for _, tc := range []struct{ path, ctype string }{
		{"/account", "text/html; charset=utf-8"},
		{"/account/", "text/html; charset=utf-8"},
		{"/account/app.js", "text/javascript; charset=utf-8"},
		{"/account/app.css", "text/css; charset=utf-8"},
		{"/account/favicon.svg", "image/svg+xml"},
		{"/account/verify-email", "text/html; charset=utf-8"},
		{"/account/reset-password", "text/html; charset=utf-8"},
		{"/account/magic-link", "text/html; charset=utf-8"},
		{"/account/change-email", "text/html; charset=utf-8"},
	} {
		w := get(t, h, http.MethodGet, tc.path, nil)
		if w.Code != 200 || w.Header().Get("Content-Type") != tc.ctype {
			t.Errorf("GET %s: %d %q", tc.path, w.Code, w.Header().Get("Content-Type"))
		}
		if w.Header().Get("Content-Security-Policy") != CSP || w.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: headers %v", tc.path, w.Header())
		}
		if w.Body.Len() == 0 {
			t.Errorf("GET %s: empty body", tc.path)
		}
		etag := w.Header().Get("ETag")
		if w := get(t, h, http.MethodGet, tc.path, map[string]string{"If-None-Match": etag}); w.Code != 304 {
			t.Errorf("GET %s If-None-Match: %d", tc.path, w.Code)
		}
		if w := get(t, h, http.MethodHead, tc.path, nil); w.Code != 200 || w.Body.Len() != 0 {
			t.Errorf("HEAD %s: %d, %d bytes", tc.path, w.Code, w.Body.Len())
		}
	}
	if w := get(t, h, http.MethodGet, "/account", nil); !strings.Contains(w.Body.String(), `src="/account/app.js"`) {
		t.Error("index.html does not load app.js")
	}
	for _, p := range []string{"/account/nope.js", "/account/../account.go", "/account/static/app.js", "/account/verify-email/", "/account/magic-link/x"} {
		if w := get(t, h, http.MethodGet, p, nil); w.Code != 404 {
			t.Errorf("GET %s: %d", p, w.Code)
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		w := get(t, h, m, "/account", nil)
		if w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /account: %d", m, w.Code)
		}
	}
}
