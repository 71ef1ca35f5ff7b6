package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
)

// Every response the tests receive from a Gatehouse server is validated
// against the OpenAPI document that server serves at /openapi.json (loaded
// once, from the first server asked): its status must be one the operation
// lists, its Content-Type one listed for that status, its body valid
// against the schema (JSON) and its declared headers present and valid. A
// mismatch fails the test that made the request.
//
// What the document states once for every path rather than per operation
// (see its info.description) is checked here explicitly:
//   - a path the document does not list must answer a 404 not_found problem
//     (or 403 csrf_failed for a refused cross-site state change);
//   - a method a path does not list must answer a 405 method_not_allowed
//     problem with Allow, or for OPTIONS 204 with Allow (or 403 csrf_failed);
//   - a CORS preflight answers 204 without a body on any path;
//   - HEAD is validated as GET, with an empty body;
//   - a request net/http refuses before Gatehouse sees it (a malformed
//     request line, oversized headers) gets net/http's plain-text answer,
//     and a path that is not clean (//, /./, /../) ServeMux's redirect.
//
// Responses whose body is a stream (text/event-stream) are checked for
// status and content type only, and handed on unread.

// openAPIStats counts what the validation saw, for the summary TestMain
// prints.
var openAPIStats struct {
	checked, mismatches atomic.Int64
}

// openAPI is the loaded document and its validator.
type openAPI struct {
	v     validator.Validator
	paths []openAPIPath
}

type openAPIPath struct {
	template string
	re       *regexp.Regexp
	params   int
	// responses[method][status] lists the media types of that response
	// (empty: no content).
	responses map[string]map[string][]string
}

var (
	openAPIOnce   sync.Once
	openAPILoaded *openAPI
	openAPIErr    error
)

// loadOpenAPI fetches /openapi.json from base once per test process.
func loadOpenAPI(rt http.RoundTripper, base string) (*openAPI, error) {
	openAPIOnce.Do(func() {
		openAPILoaded, openAPIErr = fetchOpenAPI(rt, base)
	})
	return openAPILoaded, openAPIErr
}

func fetchOpenAPI(rt http.RoundTripper, base string) (*openAPI, error) {
	req, err := http.NewRequest("GET", base+"/openapi.json", nil)
	if err != nil {
		return nil, err
	}
	res, err := rt.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("GET /openapi.json: %w", err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("GET /openapi.json: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /openapi.json: status %d", res.StatusCode)
	}
	doc, err := libopenapi.NewDocument(raw)
	if err != nil {
		return nil, fmt.Errorf("reading /openapi.json: %w", err)
	}
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		return nil, fmt.Errorf("building a validator from /openapi.json: %v", errors.Join(errs...))
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		return nil, fmt.Errorf("/openapi.json is not a valid OpenAPI document: %s", verrs[0].Message)
	}
	paths, err := indexPaths(raw)
	if err != nil {
		return nil, err
	}
	return &openAPI{v: v, paths: paths}, nil
}

// indexPaths reads, for every path of the document, the media types of
// each response of each operation, following $refs to components.
func indexPaths(raw []byte) ([]openAPIPath, error) {
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("reading /openapi.json: %w", err)
	}
	type response struct {
		Ref     string                     `json:"$ref"`
		Content map[string]json.RawMessage `json:"content"`
	}
	mediaTypes := func(r json.RawMessage) ([]string, error) {
		for range 8 {
			var resp response
			if err := json.Unmarshal(r, &resp); err != nil {
				return nil, err
			}
			if resp.Ref == "" {
				var types []string
				for mt := range resp.Content {
					types = append(types, mt)
				}
				return types, nil
			}
			name, ok := strings.CutPrefix(resp.Ref, "#/components/responses/")
			if !ok || doc.Components.Responses[name] == nil {
				return nil, fmt.Errorf("unresolvable response $ref %q", resp.Ref)
			}
			r = doc.Components.Responses[name]
		}
		return nil, errors.New("response $refs nest too deep")
	}
	param := regexp.MustCompile(`\{[^/}]+\}`)
	var out []openAPIPath
	for tmpl, item := range doc.Paths {
		p := openAPIPath{template: tmpl, responses: map[string]map[string][]string{}}
		p.params = len(param.FindAllString(tmpl, -1))
		// QuoteMeta escapes the braces of {name}.
		p.re = regexp.MustCompile("^" + quotedParam.ReplaceAllString(regexp.QuoteMeta(tmpl), `[^/]+`) + "$")
		for method, op := range item {
			switch method {
			case "get", "put", "post", "delete", "patch", "options", "head", "trace":
			default:
				continue
			}
			var o struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(op, &o); err != nil {
				return nil, fmt.Errorf("%s %s: %w", method, tmpl, err)
			}
			byStatus := map[string][]string{}
			for status, r := range o.Responses {
				types, err := mediaTypes(r)
				if err != nil {
					return nil, fmt.Errorf("%s %s %s: %w", method, tmpl, status, err)
				}
				byStatus[status] = types
			}
			p.responses[strings.ToUpper(method)] = byStatus
		}
		out = append(out, p)
	}
	// Literal paths before templated ones, as ServeMux prefers the most
	// specific pattern.
	slices.SortFunc(out, func(a, b openAPIPath) int {
		if a.params != b.params {
			return a.params - b.params
		}
		return strings.Compare(a.template, b.template)
	})
	return out, nil
}

var quotedParam = regexp.MustCompile(`\\\{[^/}]+\\\}`)

func (o *openAPI) find(p string) *openAPIPath {
	for i := range o.paths {
		if o.paths[i].re.MatchString(p) {
			return &o.paths[i]
		}
	}
	return nil
}

// testKey carries the *testing.T of the test that sends a request.
type testKey struct{}

func withTest(ctx context.Context, t *testing.T) context.Context {
	return context.WithValue(ctx, testKey{}, t)
}

// validatingTransport validates every response of its base transport
// against the served OpenAPI document. owner is blamed for requests that
// carry no test of their own in their context. With host set, only
// requests to that host:port are validated: a server's --metrics-addr
// listener is not the API the document describes.
type validatingTransport struct {
	base  http.RoundTripper
	owner *testing.T
	host  string
}

// validated wraps rt so that the responses it returns are validated,
// failing t (or the test named by the request's context).
func validated(t *testing.T, rt http.RoundTripper) http.RoundTripper {
	return &validatingTransport{base: rt, owner: t}
}

// noOpenAPI (GATEHOUSE_E2E_NO_OPENAPI=1) turns the validation off, to
// measure what it costs.
var noOpenAPI = os.Getenv("GATEHOUSE_E2E_NO_OPENAPI") == "1"

func (vt *validatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := vt.base.RoundTrip(req)
	if err != nil || noOpenAPI || (vt.host != "" && req.URL.Host != vt.host) {
		return res, err
	}
	t, _ := req.Context().Value(testKey{}).(*testing.T)
	if t == nil {
		t = vt.owner
	}
	base := req.URL.Scheme + "://" + req.URL.Host
	doc, lerr := loadOpenAPI(vt.base, base)
	if lerr != nil {
		t.Errorf("openapi: cannot validate %s %s: %v", req.Method, req.URL.Path, lerr)
		return res, nil
	}
	if isStream(res) {
		openAPIStats.checked.Add(1)
		for _, msg := range doc.check(req, res, nil, false) {
			openAPIStats.mismatches.Add(1)
			t.Errorf("openapi: %s %s -> %d: %s", req.Method, req.URL.Path, res.StatusCode, msg)
		}
		return res, nil
	}
	body, rerr := io.ReadAll(res.Body)
	res.Body.Close()
	if rerr != nil {
		// The caller sees the same failure it would have seen reading.
		res.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{rerr}))
		return res, nil
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	openAPIStats.checked.Add(1)
	for _, msg := range doc.check(req, res, body, true) {
		openAPIStats.mismatches.Add(1)
		t.Errorf("openapi: %s %s -> %d: %s", req.Method, req.URL.Path, res.StatusCode, msg)
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	return res, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func isStream(res *http.Response) bool {
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	return mt == "text/event-stream"
}

// check returns what is wrong with one response; body is nil for a stream.
func (o *openAPI) check(req *http.Request, res *http.Response, body []byte, haveBody bool) []string {
	status := res.StatusCode
	p := req.URL.Path

	// Answers of net/http itself, before any Gatehouse handler runs.
	if status >= 400 && strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") &&
		res.Header.Get("X-Content-Type-Options") == "" &&
		bytes.HasPrefix(body, []byte(fmt.Sprintf("%d %s", status, http.StatusText(status)))) {
		return nil
	}
	if clean := cleanPath(p); clean != p && (status == http.StatusMovedPermanently || status == http.StatusTemporaryRedirect || status == http.StatusPermanentRedirect) {
		if res.Header.Get("Location") == "" {
			return []string{"a redirect to the clean path without Location"}
		}
		return nil
	}
	if req.Method == http.MethodOptions && req.Header.Get("Access-Control-Request-Method") != "" {
		if status != http.StatusNoContent || len(body) > 0 {
			return []string{"a CORS preflight must answer 204 without a body"}
		}
		return nil
	}

	item := o.find(p)
	if item == nil {
		return problemOneOf(res, body, map[int][]string{
			http.StatusNotFound:  {"not_found"},
			http.StatusForbidden: {"csrf_failed"},
		}, "a path the document does not list")
	}
	method := req.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if _, ok := item.responses[method]; !ok {
		if req.Method == http.MethodOptions && status == http.StatusNoContent {
			if res.Header.Get("Allow") == "" {
				return []string{"OPTIONS without an Allow header"}
			}
			return nil
		}
		msgs := problemOneOf(res, body, map[int][]string{
			http.StatusMethodNotAllowed: {"method_not_allowed"},
			http.StatusForbidden:        {"csrf_failed"},
		}, fmt.Sprintf("%s is not an operation of %s", req.Method, item.template))
		if status == http.StatusMethodNotAllowed && res.Header.Get("Allow") == "" {
			msgs = append(msgs, "405 without an Allow header")
		}
		return msgs
	}

	declared, ok := item.responses[method][strconv.Itoa(status)]
	if !ok {
		declared, ok = item.responses[method][fmt.Sprintf("%dXX", status/100)]
	}
	if !ok {
		return []string{fmt.Sprintf("status %d is not listed for %s %s (body %s)", status, method, item.template, abbrevBody(body))}
	}
	ct := res.Header.Get("Content-Type")
	if len(declared) == 0 {
		if haveBody && len(body) > 0 {
			return []string{fmt.Sprintf("%s %s %d declares no content but the body has %d bytes (%s)", method, item.template, status, len(body), abbrevBody(body))}
		}
		if haveBody && ct != "" && req.Method != http.MethodHead {
			return []string{fmt.Sprintf("%s %s %d declares no content but Content-Type is %q", method, item.template, status, ct)}
		}
	} else if !mediaTypeListed(ct, declared) {
		return []string{fmt.Sprintf("Content-Type %q is not one of %v for %s %s %d", ct, declared, method, item.template, status)}
	}
	if !haveBody {
		return nil
	}
	if req.Method == http.MethodHead {
		if len(body) > 0 {
			return []string{"a HEAD response with a body"}
		}
		get := req.Clone(req.Context())
		get.Method = http.MethodGet
		req = get
	}
	// The library reads (and restores) the body and validates status,
	// content type, schema and declared headers.
	v := *res
	v.Body = io.NopCloser(bytes.NewReader(body))
	v.Request = req
	if ok, errs := o.v.ValidateHttpResponse(req, &v); !ok {
		var msgs []string
		for _, e := range errs {
			msg := e.Message
			if e.Reason != "" && e.Reason != e.Message {
				msg += ": " + e.Reason
			}
			for _, se := range e.SchemaValidationErrors {
				msg += fmt.Sprintf("\n\t\t%s: %s", se.FieldPath, se.Reason)
			}
			msgs = append(msgs, msg+"\n\t\tbody: "+abbrevBody(body))
		}
		return msgs
	}
	return nil
}

// problemOneOf checks a response that the document describes only as a
// rule: a problem with one of the given status and code pairs.
func problemOneOf(res *http.Response, body []byte, allowed map[int][]string, what string) []string {
	codes, ok := allowed[res.StatusCode]
	if !ok {
		return []string{fmt.Sprintf("%s must answer one of %v, not %d (body %s)", what, allowed, res.StatusCode, abbrevBody(body))}
	}
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != "application/problem+json" {
		return []string{fmt.Sprintf("%s: Content-Type %q, want application/problem+json", what, res.Header.Get("Content-Type"))}
	}
	var p struct {
		Code   string `json:"code"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(body, &p); err != nil || !slices.Contains(codes, p.Code) || p.Status != res.StatusCode {
		return []string{fmt.Sprintf("%s: problem %s, want status %d with code in %v", what, abbrevBody(body), res.StatusCode, codes)}
	}
	return nil
}

// mediaTypeListed reports whether the Content-Type ct is one of the listed
// media types (parameters of a listed type, if any, must be present too).
func mediaTypeListed(ct string, listed []string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	for _, l := range listed {
		lmt, lparams, err := mime.ParseMediaType(l)
		if err != nil || lmt != mt {
			continue
		}
		match := true
		for k, v := range lparams {
			if !strings.EqualFold(params[k], v) {
				match = false
			}
		}
		if match {
			return true
		}
	}
	return false
}

// cleanPath is ServeMux's notion of a clean path.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np
}

func abbrevBody(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "...(truncated)"
	}
	return string(b)
}

// reportOpenAPI prints how many responses were validated (with -v, or
// when some did not match) and passes the exit code on.
func reportOpenAPI(code int) int {
	n, bad := openAPIStats.checked.Load(), openAPIStats.mismatches.Load()
	if bad > 0 || testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: %d responses validated against /openapi.json, %d mismatches\n", n, bad)
	}
	if n == 0 && code == 0 && !noOpenAPI && testing.Verbose() {
		fmt.Fprintln(os.Stderr, "e2e: no response was validated against /openapi.json")
	}
	return code
}

// TestOpenAPIValidation proves the validation both ways: real answers that
// the document describes only by its general rules pass, and answers that
// contradict the document are reported.
func TestOpenAPIValidation(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	// Real answers, validated by the harness as they arrive.
	expect(t, s.do(t, "GET", "/no/such/path", nil), http.StatusNotFound, "not_found")
	expect(t, s.do(t, "PUT", "/healthz", rawBody(`{}`)), http.StatusMethodNotAllowed, "method_not_allowed")
	expect(t, s.do(t, "HEAD", "/healthz", nil), http.StatusOK, "")
	expect(t, s.do(t, "OPTIONS", "/auth/login", nil), http.StatusNoContent, "")
	r := s.do(t, "GET", "/openapi.json", nil)
	expect(t, r, http.StatusOK, "")
	expect(t, s.do(t, "GET", "/openapi.json", nil, hdr("If-None-Match", r.Header.Get("ETag"))), http.StatusNotModified, "")

	doc, err := loadOpenAPI(s.tr, s.base)
	if err != nil {
		t.Fatal(err)
	}
	problem := func(status int, code string) string {
		return fmt.Sprintf(`{"type":"https://gatehouse.dev/problems/%s","title":"t","status":%d,"detail":"d","code":%q}`, code, status, code)
	}
	for _, tc := range []struct {
		name, method, path string
		status             int
		header             map[string]string
		body               string
		wantBad            bool
	}{
		{"listed", "GET", "/healthz", 200, map[string]string{"Content-Type": "application/json"}, `{"status":"ok"}`, false},
		{"unlisted status", "GET", "/healthz", 201, map[string]string{"Content-Type": "application/json"}, `{"status":"ok"}`, true},
		{"body against the schema", "GET", "/healthz", 200, map[string]string{"Content-Type": "application/json"}, `{"status":"fine"}`, true},
		{"unlisted content type", "GET", "/healthz", 200, map[string]string{"Content-Type": "text/plain"}, `ok`, true},
		{"problem code of another status", "GET", "/auth/me", 401, map[string]string{"Content-Type": "application/problem+json", "WWW-Authenticate": "Bearer"}, problem(401, "invalid_credentials"), true},
		{"required header missing", "GET", "/auth/me", 401, map[string]string{"Content-Type": "application/problem+json"}, problem(401, "invalid_token"), true},
		{"required header present", "GET", "/auth/me", 401, map[string]string{"Content-Type": "application/problem+json", "WWW-Authenticate": "Bearer"}, problem(401, "invalid_token"), false},
		{"a body where none is declared", "DELETE", "/auth/sessions/abc", 204, map[string]string{"Content-Type": "application/json"}, `{}`, true},
		{"unknown path, 404 problem", "GET", "/nope", 404, map[string]string{"Content-Type": "application/problem+json"}, problem(404, "not_found"), false},
		{"unknown path, 200", "GET", "/nope", 200, map[string]string{"Content-Type": "application/json"}, `{}`, true},
		{"unlisted method without Allow", "PUT", "/healthz", 405, map[string]string{"Content-Type": "application/problem+json"}, problem(405, "method_not_allowed"), true},
		{"unlisted method answered 200", "PUT", "/healthz", 200, map[string]string{"Content-Type": "application/json"}, `{"status":"ok"}`, true},
		{"templated path", "DELETE", "/admin/sessions/xyz", 404, map[string]string{"Content-Type": "application/problem+json"}, problem(404, "not_found"), false},
		{"literal path before a template", "POST", "/auth/passkeys/login/begin", 409, map[string]string{"Content-Type": "application/problem+json"}, problem(409, "last_login_method"), true},
	} {
		req := httptest.NewRequest(tc.method, s.base+tc.path, nil)
		res := &http.Response{StatusCode: tc.status, Header: http.Header{}, Request: req}
		for k, v := range tc.header {
			res.Header.Set(k, v)
		}
		msgs := doc.check(req, res, []byte(tc.body), true)
		if tc.wantBad && len(msgs) == 0 {
			t.Errorf("%s: %s %s -> %d %s passed validation", tc.name, tc.method, tc.path, tc.status, tc.body)
		}
		if !tc.wantBad && len(msgs) > 0 {
			t.Errorf("%s: %s %s -> %d %s failed validation: %v", tc.name, tc.method, tc.path, tc.status, tc.body, msgs)
		}
	}
}
