package openapi

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
)

func document(t *testing.T) map[string]any {
	t.Helper()
	raw, err := JSON()
	if err != nil {
		t.Fatalf("assembling the document: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	return doc
}

// TestDocumentValid checks the assembled document against the OpenAPI 3.1
// schema and builds a validator from it, which compiles every schema.
func TestDocumentValid(t *testing.T) {
	raw, err := JSON()
	if err != nil {
		t.Fatalf("assembling the document: %v", err)
	}
	doc, err := libopenapi.NewDocument(raw)
	if err != nil {
		t.Fatalf("libopenapi cannot read the document: %v", err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Errorf("openapi version %q, want 3.1.0", v)
	}
	if _, err := doc.BuildV3Model(); err != nil {
		t.Fatalf("building the model: %v", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("building a validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("document invalid: %s: %s", e.Message, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  at %s: %s", se.KeywordLocation, se.Reason)
			}
		}
	}
}

// TestRefsResolve walks every $ref: each must point into this document and
// name something that exists (a typo would otherwise surface only when a
// response happened to use it).
func TestRefsResolve(t *testing.T) {
	doc := document(t)
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				if !strings.HasPrefix(ref, "#/") {
					t.Errorf("%s: $ref %q points outside the document", at, ref)
				} else if _, err := pointer(doc, ref[1:]); err != nil {
					t.Errorf("%s: $ref %q: %v", at, ref, err)
				}
			}
			for k, e := range x {
				walk(e, at+"/"+k)
			}
		case []any:
			for i, e := range x {
				walk(e, at+"/"+strconv.Itoa(i))
			}
		}
	}
	walk(doc, "")
}

func pointer(doc any, ptr string) (any, error) {
	cur := doc
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok, _ = url.PathUnescape(tok)
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%q is not inside a map", tok)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("no %q", tok)
		}
	}
	return cur, nil
}

// TestOperationsComplete holds every operation to the rules that make the
// e2e validation meaningful: each lists the problems the HTTP layer can
// give it whatever the endpoint (a body that is not JSON, a cross-site
// request, a missing token), problems are application/problem+json, and a
// 429 says when to come back.
func TestOperationsComplete(t *testing.T) {
	doc := document(t)
	paths := doc["paths"].(map[string]any)
	resolve := func(v any) map[string]any {
		m, _ := v.(map[string]any)
		for m != nil && m["$ref"] != nil {
			r, err := pointer(doc, m["$ref"].(string)[1:])
			if err != nil {
				return nil
			}
			m, _ = r.(map[string]any)
		}
		return m
	}
	ids := map[string]string{}
	for p, item := range paths {
		for method, op := range item.(map[string]any) {
			if !slices.Contains([]string{"get", "post", "put", "patch", "delete"}, method) {
				continue
			}
			o := op.(map[string]any)
			name := strings.ToUpper(method) + " " + p
			if id, _ := o["operationId"].(string); id == "" {
				t.Errorf("%s: no operationId", name)
			} else if prev, dup := ids[id]; dup {
				t.Errorf("%s: operationId %q already used by %s", name, id, prev)
			} else {
				ids[id] = name
			}
			responses, _ := o["responses"].(map[string]any)
			if len(responses) == 0 {
				t.Errorf("%s: no responses", name)
				continue
			}
			has := func(code string) bool { _, ok := responses[code]; return ok }
			if _, ok := responses["default"]; ok {
				t.Errorf("%s: a default response would let any status pass; list the statuses", name)
			}
			// The OAuth endpoints answer in the OAuth error form, take
			// forms or Bearer headers (no cookie, so no CSRF refusal), and
			// let the protocol library read their bodies.
			oauth := strings.HasPrefix(p, "/oauth2/")
			if o["requestBody"] != nil && !oauth {
				for _, c := range []string{"400", "413", "415"} {
					if !has(c) {
						t.Errorf("%s: takes a body but does not list %s", name, c)
					}
				}
			}
			if method != "get" && !has("403") && !oauth {
				t.Errorf("%s: changes state but does not list 403 (csrf_failed)", name)
			}
			if sec, ok := o["security"].([]any); ok {
				for _, req := range sec {
					if _, bearer := req.(map[string]any)["bearer"]; bearer && !has("401") {
						t.Errorf("%s: takes a Bearer token but does not list 401", name)
					}
				}
			}
			for code, r := range responses {
				resp := resolve(r)
				if resp == nil {
					t.Errorf("%s %s: unresolvable response", name, code)
					continue
				}
				content, _ := resp["content"].(map[string]any)
				n, err := strconv.Atoi(code)
				if err != nil {
					t.Errorf("%s: response key %q is not a status code", name, code)
					continue
				}
				if n >= 400 && oauth {
					if _, ok := content["application/json"]; !ok || len(content) != 1 {
						t.Errorf("%s %s: an OAuth error must be application/json alone", name, code)
					}
				} else if n >= 400 {
					if _, ok := content["application/problem+json"]; !ok || len(content) != 1 {
						t.Errorf("%s %s: an error must be application/problem+json alone", name, code)
					}
				}
				if (n == 204 || (n >= 301 && n <= 308)) && len(content) != 0 {
					t.Errorf("%s %s: must have no content", name, code)
				}
				if n == 429 {
					headers, _ := resp["headers"].(map[string]any)
					if headers["Retry-After"] == nil {
						t.Errorf("%s 429: no Retry-After header", name)
					}
				}
			}
		}
	}
	if len(ids) < 30 {
		t.Errorf("only %d operations; the fragments did not all load", len(ids))
	}
}

func TestAssembleRefusesDuplicatesAndStrayKeys(t *testing.T) {
	base := "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths: {}\ncomponents:\n  schemas:\n    Problem: {type: object}\n"
	frag := func(body string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(body)} }
	for _, tc := range []struct {
		name  string
		files fstest.MapFS
		want  string
	}{
		{"path twice", fstest.MapFS{
			"paths/a.yaml": frag("paths:\n  /x: {get: {responses: {'200': {description: ok}}}}\n"),
			"paths/b.yaml": frag("paths:\n  /x: {post: {responses: {'200': {description: ok}}}}\n"),
		}, `path "/x" is already defined in paths/a.yaml`},
		{"schema twice", fstest.MapFS{
			"paths/a.yaml": frag("paths:\n  /a: {}\nschemas:\n  Thing: {type: object}\n"),
			"paths/b.yaml": frag("paths:\n  /b: {}\nschemas:\n  Thing: {type: string}\n"),
		}, `schema "Thing" is already defined in paths/a.yaml`},
		{"shared schema redefined", fstest.MapFS{
			"paths/a.yaml": frag("paths:\n  /a: {}\nschemas:\n  Problem: {type: string}\n"),
		}, `schema "Problem" is already defined in base.yaml`},
		{"stray key", fstest.MapFS{
			"paths/a.yaml": frag("paths:\n  /a: {}\ncomponents:\n  schemas: {}\n"),
		}, `unknown top-level key "components"`},
		{"key twice in one file", fstest.MapFS{
			"paths/a.yaml": frag("paths:\n  /a: {}\n  /a: {}\n"),
		}, `already defined`},
		{"no paths", fstest.MapFS{
			"paths/a.yaml": frag("schemas:\n  A: {type: object}\n"),
		}, `no paths`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.files["base.yaml"] = frag(base)
			_, err := Assemble(tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Assemble: error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestAssembleMerges(t *testing.T) {
	files := fstest.MapFS{
		"base.yaml":    {Data: []byte("openapi: 3.1.0\ninfo: {title: t, version: '1'}\ncomponents:\n  schemas:\n    Problem: {type: object}\n")},
		"paths/a.yaml": {Data: []byte("paths:\n  /a:\n    get:\n      responses:\n        200: {description: ok}\nschemas:\n  AThing: {type: object}\n")},
		"paths/b.yaml": {Data: []byte("paths:\n  /b: {}\n")},
	}
	raw, err := Assemble(files)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]map[string]map[string]any
		Components struct{ Schemas map[string]any }
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc.Paths["/a"]["get"]["responses"]["200"]; !ok {
		t.Errorf("unquoted status 200 did not become the key \"200\": %s", raw)
	}
	if _, ok := doc.Paths["/b"]; !ok {
		t.Errorf("path of the second fragment missing: %s", raw)
	}
	for _, s := range []string{"Problem", "AThing"} {
		if _, ok := doc.Components.Schemas[s]; !ok {
			t.Errorf("schema %s missing: %s", s, raw)
		}
	}
}
