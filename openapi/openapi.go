// Package openapi assembles Gatehouse's OpenAPI 3.1 description, served at
// GET /openapi.json, from YAML embedded in the binary: spec/base.yaml (info,
// security schemes, shared components) and one fragment per area of the API
// in spec/paths/*.yaml. Each feature describes its own endpoints in its own
// fragment, so that features can be added side by side without editing one
// large file.
//
// A fragment has a top-level "paths" map and, optionally, a "schemas" map
// merged into components.schemas. A path or schema defined twice is an
// error, as is any other top-level key: a typo must not drop a definition.
package openapi

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

//go:embed spec
var specFS embed.FS

// JSON assembles the embedded document and returns it as compact JSON.
// Gatehouse calls it once at start and serves the bytes.
func JSON() ([]byte, error) {
	sub, err := fs.Sub(specFS, "spec")
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return Assemble(sub)
}

// Assemble builds the document from fsys, which holds base.yaml and
// paths/*.yaml, and returns it as JSON.
func Assemble(fsys fs.FS) ([]byte, error) {
	doc, err := assemble(fsys)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: encoding JSON: %w", err)
	}
	return out, nil
}

func assemble(fsys fs.FS) (map[string]any, error) {
	doc, err := readYAML(fsys, "base.yaml")
	if err != nil {
		return nil, err
	}
	paths, err := childMap(doc, "paths", "base.yaml")
	if err != nil {
		return nil, err
	}
	components, err := childMap(doc, "components", "base.yaml")
	if err != nil {
		return nil, err
	}
	schemas, err := childMap(components, "schemas", "base.yaml components")
	if err != nil {
		return nil, err
	}
	// Where each name came from, for the error on a duplicate.
	pathFrom := map[string]string{}
	for p := range paths {
		pathFrom[p] = "base.yaml"
	}
	schemaFrom := map[string]string{}
	for s := range schemas {
		schemaFrom[s] = "base.yaml"
	}

	names, err := fs.Glob(fsys, "paths/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("openapi: listing fragments: %w", err)
	}
	slices.Sort(names)
	for _, name := range names {
		frag, err := readYAML(fsys, name)
		if err != nil {
			return nil, err
		}
		for key := range frag {
			if key != "paths" && key != "schemas" {
				return nil, fmt.Errorf("openapi: %s: unknown top-level key %q (a fragment holds only paths and schemas)", name, key)
			}
		}
		fragPaths, err := childMap(frag, "paths", name)
		if err != nil {
			return nil, err
		}
		if len(fragPaths) == 0 {
			return nil, fmt.Errorf("openapi: %s: no paths", name)
		}
		if err := merge(paths, fragPaths, pathFrom, name, "path"); err != nil {
			return nil, err
		}
		if _, ok := frag["schemas"]; ok {
			fragSchemas, err := childMap(frag, "schemas", name)
			if err != nil {
				return nil, err
			}
			if err := merge(schemas, fragSchemas, schemaFrom, name, "schema"); err != nil {
				return nil, err
			}
		}
	}
	addCredentialInURL(paths)
	return doc, nil
}

// addCredentialInURL lists, on every operation that takes a Bearer
// credential and has no 400 of its own, the 400 that the server answers to
// an API key sent in the URL: one rule of the HTTP layer, stated once here
// rather than in every fragment.
func addCredentialInURL(paths map[string]any) {
	for _, item := range paths {
		ops, _ := item.(map[string]any)
		for _, op := range ops {
			o, _ := op.(map[string]any)
			if o == nil || !takesBearer(o) {
				continue
			}
			responses, _ := o["responses"].(map[string]any)
			if responses == nil {
				continue
			}
			if _, ok := responses["400"]; !ok {
				responses["400"] = map[string]any{"$ref": "#/components/responses/CredentialInURL"}
			}
		}
	}
}

func takesBearer(op map[string]any) bool {
	reqs, _ := op["security"].([]any)
	for _, r := range reqs {
		if m, ok := r.(map[string]any); ok {
			if _, ok := m["bearer"]; ok {
				return true
			}
		}
	}
	return false
}

// merge adds src's entries to dst, refusing a name that is already there.
func merge(dst, src map[string]any, from map[string]string, file, kind string) error {
	keys := make([]string, 0, len(src))
	for k := range src {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if prev, dup := from[k]; dup {
			return fmt.Errorf("openapi: %s: %s %q is already defined in %s", file, kind, k, prev)
		}
		dst[k] = src[k]
		from[k] = file
	}
	return nil
}

// childMap returns m[key] as a map, creating an empty one when absent.
func childMap(m map[string]any, key, where string) (map[string]any, error) {
	v, ok := m[key]
	if !ok || v == nil {
		c := map[string]any{}
		m[key] = c
		return c, nil
	}
	c, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("openapi: %s: %q is not a map", where, key)
	}
	return c, nil
}

func readYAML(fsys fs.FS, name string) (map[string]any, error) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("openapi: %s: %w", path.Base(name), err)
	}
	v, err = jsonCompatible(v)
	if err != nil {
		return nil, fmt.Errorf("openapi: %s: %w", name, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("openapi: %s: the document is not a map", name)
	}
	return m, nil
}

// jsonCompatible turns what YAML decoding produces into values encoding/json
// can write: maps keyed by non-strings (an unquoted status code such as
// 200) get string keys.
func jsonCompatible(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			c, err := jsonCompatible(e)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
		return x, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			var ks string
			switch kk := k.(type) {
			case string:
				ks = kk
			case int:
				ks = strconv.Itoa(kk)
			default:
				return nil, fmt.Errorf("map key %v of type %T", k, k)
			}
			if _, dup := out[ks]; dup {
				return nil, fmt.Errorf("map key %q appears twice", ks)
			}
			c, err := jsonCompatible(e)
			if err != nil {
				return nil, err
			}
			out[ks] = c
		}
		return out, nil
	case []any:
		for i, e := range x {
			c, err := jsonCompatible(e)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
		return x, nil
	}
	return v, nil
}
