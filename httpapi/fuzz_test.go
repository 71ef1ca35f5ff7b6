package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for the HTTP layer's parsers of untrusted input: the
// Authorization header, the CSRF cookie/header pair and the JSON body.
// Seed corpora live in testdata/fuzz/<Name>/; CI runs each briefly
// (.ci/run). Run one by hand with, for example:
//
//	go test -run '^$' -fuzz '^FuzzReadBody$' -fuzztime 60s ./httpapi/

// FuzzBearerToken: bearerToken never panics, and whatever it returns as a
// token is a non-empty, whitespace-free substring of a single header whose
// scheme is Bearer (case-insensitively). No header means "not present".
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{
		"", "Bearer abc.def.ghi", "bearer abc", "BEARER abc", "Bearer", "Bearer ", "Bearer  abc", "Bearer a b",
		"Bearer\tabc", "Basic YTpi", "Bearer abc ", " Bearer abc", "Bearerabc", "Bearer \x00", "Bearer é",
		"Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer " + strings.Repeat("A", 9000),
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, header string, twice bool) {
		r := httptest.NewRequest(http.MethodGet, "/auth/me", nil)
		if header != "" || twice {
			// Set directly: the fuzzer may produce bytes a client library
			// would refuse, but a raw TCP peer can send most of them.
			r.Header["Authorization"] = []string{header}
			if twice {
				r.Header["Authorization"] = append(r.Header["Authorization"], header)
			}
		}
		tok, present := bearerToken(r)
		if len(r.Header["Authorization"]) == 0 {
			if present || tok != "" {
				t.Fatalf("no header: got %q, %v", tok, present)
			}
			return
		}
		if !present {
			t.Fatalf("header %q reported as absent", header)
		}
		if tok == "" {
			return
		}
		if twice {
			t.Fatalf("two Authorization headers yielded token %q", tok)
		}
		if strings.ContainsAny(tok, " \t") {
			t.Fatalf("token %q contains whitespace", tok)
		}
		if !strings.Contains(header, tok) {
			t.Fatalf("token %q is not part of header %q", tok, header)
		}
		scheme, _, _ := strings.Cut(header, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			t.Fatalf("header %q with scheme %q yielded token %q", header, scheme, tok)
		}
	})
}

// FuzzCheckCSRF: checkCSRF never panics on any Cookie header, CSRF header
// and refresh token, and accepts only when the header is exactly the HMAC
// bound to the session the refresh token names and a CSRF cookie carries
// that same value. An attacker who cannot compute the HMAC cannot pass.
func FuzzCheckCSRF(f *testing.F) {
	key := []byte(strings.Repeat("k", 32))
	good := csrfToken(key, "sid1")
	other := csrfToken(key, "sid2")
	f.Add(csrfCookie+"="+good, good, "sid1.secret")
	f.Add(csrfCookie+"="+other, other, "sid1.secret")
	f.Add(csrfCookie+"="+good+"; "+csrfCookie+"=x", good, "sid1.secret")
	f.Add(csrfCookie+"=x; "+csrfCookie+"="+good, good, "sid1.secret")
	f.Add(refreshCookie+"=sid1.secret; "+csrfCookie+"="+good, good, "sid1.secret")
	f.Add(csrfCookie+"=\""+good+"\"", good, "sid1.secret")
	f.Add(csrfCookie+"=", "", "sid1.secret")
	f.Add("", good, "sid1.secret")
	f.Add(csrfCookie+"="+good, good, "nodot")
	f.Add(csrfCookie+"="+good, good, ".sid1")
	f.Add(strings.ToUpper(csrfCookie)+"="+good, good, "sid1.secret")
	f.Add(csrfCookie+"="+strings.Repeat("a", 200), strings.Repeat("a", 200), "sid1.secret")
	f.Fuzz(func(t *testing.T, cookieHeader, header, refresh string) {
		r := httptest.NewRequest(http.MethodPost, "/auth/refresh", nil)
		if cookieHeader != "" {
			r.Header["Cookie"] = []string{cookieHeader}
		}
		if header != "" {
			r.Header[csrfHeader] = []string{header}
		}
		ok := checkCSRF(r, key, refresh)
		if !ok {
			return
		}
		sid, _, found := strings.Cut(refresh, ".")
		if !found {
			t.Fatalf("accepted a refresh token without a session id: %q", refresh)
		}
		want := csrfToken(key, sid)
		if header != want {
			t.Fatalf("accepted header %q for session %q, want exactly %q", header, sid, want)
		}
		if !slices.ContainsFunc(r.CookiesNamed(csrfCookie), func(c *http.Cookie) bool { return c.Value == want }) {
			t.Fatalf("accepted without the bound CSRF cookie (cookie header %q)", cookieHeader)
		}
	})
}

type fuzzBody struct {
	Email          string  `json:"email"`
	Password       string  `json:"password"`
	Name           string  `json:"name"`
	TokenTransport string  `json:"token_transport"`
	RefreshToken   *string `json:"refresh_token"`
}

// FuzzReadBody: readBody never panics; every refusal maps to a 4xx problem
// (400, 413, 415 or 422), never a 500; anything it accepts is a JSON
// content type, at most 64 KiB, valid UTF-8 and valid JSON, and decodes to
// exactly what encoding/json makes of it, so the strict decoder never
// disagrees with the standard one about what a body means.
func FuzzReadBody(f *testing.F) {
	for _, s := range []struct {
		ct, body string
	}{
		{"application/json", `{"email":"a@b.co","password":"pw"}`},
		{"application/json; charset=utf-8", `{"refresh_token":"abc.def"}`},
		{"application/json", `{"email":"a","email":"b"}`},
		{"application/json", `{"Email":"a"}`},
		{"application/json", `{"email":"a","admin":true}`},
		{"application/json", `{"email":5}`},
		{"application/json", "{\"email\":\"\xff\"}"},
		{"application/json", `{"email":"\ud800"}`},
		{"application/json", `{"to\u212aen_transport":"body"}`},
		{"application/json", `{"refresh_token":null}`},
		{"application/json", `[]`},
		{"application/json", `{} {}`},
		{"application/json", ``},
		{"", ``},
		{"text/plain", `{}`},
		{"application/json; charset=latin1", `{}`},
		{"application/json", strings.Repeat("[", 1000)},
		{"application/json", `{"name":"` + strings.Repeat("x", 70000) + `"}`},
	} {
		f.Add(s.ct, []byte(s.body), false)
		f.Add(s.ct, []byte(s.body), true)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, ct string, body []byte, optional bool) {
		r := httptest.NewRequest(http.MethodPost, "/auth/login", bytes.NewReader(body))
		if ct != "" {
			r.Header["Content-Type"] = []string{ct}
		}
		var v fuzzBody
		present, err := readBody(r, &v, optional)
		if err != nil {
			w := httptest.NewRecorder()
			writeError(w, r, logger, err)
			switch w.Code {
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
			default:
				t.Fatalf("refusal became %d: %v", w.Code, err)
			}
			return
		}
		if !present {
			if len(body) != 0 || !optional {
				t.Fatalf("absent body reported for %d bytes (optional %v)", len(body), optional)
			}
			return
		}
		if len(body) > maxBody {
			t.Fatalf("accepted %d bytes", len(body))
		}
		if !isJSON(r) {
			t.Fatalf("accepted Content-Type %q", ct)
		}
		if !utf8.Valid(body) {
			t.Fatalf("accepted invalid UTF-8: %q", body)
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON: %q", body)
		}
		var std fuzzBody
		if err := json.Unmarshal(body, &std); err != nil {
			t.Fatalf("strict decoder accepted what encoding/json refuses (%v): %q", err, body)
		}
		if !reflect.DeepEqual(std, v) {
			t.Fatalf("decoders disagree on %q:\nstrict %+v\nstd    %+v", body, v, std)
		}
	})
}
