// Package strictjson decodes request bodies the way the API contract
// requires: exactly one JSON object, valid UTF-8, no unknown, duplicate or
// case-variant keys, bounded nesting.
//
// encoding/json alone is not enough: it matches keys case-insensitively
// ("Email" fills Email), keeps the last of duplicate keys (so two parts of a
// system can read different values from one body), and replaces invalid
// UTF-8 and lone surrogate escapes with U+FFFD instead of failing. Decode
// therefore first walks the token stream against the target type, checking
// every rule with a field path for the error, and only then lets
// encoding/json (with DisallowUnknownFields) fill the value.
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of objects and arrays accepted; the top
// level object is depth 1. Request bodies are flat, so this only stops
// pathological input early.
const MaxDepth = 32

// maxFieldLen bounds how much of a client-supplied key is copied into
// Error.Field, so an error never carries a 64 KiB key into a log line.
const maxFieldLen = 64

// Error is the only error type Decode returns.
type Error struct {
	// Field is the JSON path of the offending value, like "email" or
	// "address.city" or "tags[2]", or "" when the problem is not at a field.
	Field string
	// Reason is a human sentence fit for a client. It never contains the
	// input value.
	Reason string
	// WrongType is true when the body is well-formed, its keys are right,
	// but a value does not fit its field's type (a string for a number, a
	// number out of range...). Callers typically answer 422 for these and
	// 400 for everything else.
	WrongType bool
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "strictjson: " + e.Reason
	}
	return "strictjson: field " + strconv.Quote(e.Field) + ": " + e.Reason
}

// Decode parses data as exactly one JSON object into v, a non-nil pointer to
// a struct. See the package documentation for the rules. Every error is an
// *Error. v is untouched when the body breaks a rule; it may be partly filled
// only if encoding/json itself fails afterwards, which the walk is designed
// to prevent.
func Decode(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		// A programming error, but still an *Error so callers have one
		// type to handle.
		return &Error{Reason: fmt.Sprintf("decode target must be a non-nil pointer to a struct, not %T", v)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &Error{Reason: "the body is empty"}
	}
	if !utf8.Valid(data) {
		return &Error{Reason: "the body is not valid UTF-8"}
	}
	if err := checkSurrogates(data); err != nil {
		return err
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keep numbers as text so range checks are exact
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	if tok != json.Delim('{') {
		return &Error{Reason: "the body must be a JSON object"}
	}
	w := walker{dec: dec}
	if err := w.object(shapeOf(rv.Elem().Type()), "", 1); err != nil {
		return preferSyntax(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &Error{Reason: "unexpected data after the JSON object"}
	}

	// Every rule holds; encoding/json now fills v. DisallowUnknownFields is
	// a second line of defence should the walk and encoding/json ever
	// disagree about a field.
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fromJSONError(err)
	}
	return nil
}

// checkSurrogates rejects \uXXXX escapes of UTF-16 surrogates that do not
// form a high-low pair: encoding/json would turn them into U+FFFD silently,
// so "a\ud800" and "a\ufffd" would become the same string. data is known
// to be valid UTF-8; malformed JSON is left for the tokenizer to report.
func checkSurrogates(data []byte) error {
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !inString {
			if c == '"' {
				inString = true
			}
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 < len(data) && data[i+1] == 'u' {
				r, ok := hex4(data, i+2)
				switch {
				case !ok:
					// Not an escape encoding/json accepts either; the
					// tokenizer reports it.
				case 0xDC00 <= r && r <= 0xDFFF:
					return &Error{Reason: "a string contains an unpaired UTF-16 surrogate escape"}
				case 0xD800 <= r && r <= 0xDBFF:
					lo, ok := rune(0), false
					if i+7 < len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
						lo, ok = hex4(data, i+8)
					}
					if !ok || lo < 0xDC00 || lo > 0xDFFF {
						return &Error{Reason: "a string contains an unpaired UTF-16 surrogate escape"}
					}
					i += 6 // skip the high half; the low half is skipped below
				}
				i += 5
			} else {
				i++ // skip the escaped character, which may be '"' or '\\'
			}
		}
	}
	return nil
}

// hex4 decodes the four hex digits at data[i:i+4].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// preferSyntax reports a syntax error anywhere in data in place of err. The
// walk stops at the first broken rule, which may come before a syntax error
// further on; malformed JSON must be reported as such (400), not as a wrong
// type (422). Only the failure path pays for the extra scan.
func preferSyntax(data []byte, err error) error {
	var raw json.RawMessage
	if serr := json.Unmarshal(data, &raw); serr != nil {
		var se *json.SyntaxError
		if errors.As(serr, &se) {
			return syntaxError(serr)
		}
	}
	return err
}

// syntaxError turns a tokenizer error into an *Error without quoting the
// offending character (it is input).
func syntaxError(err error) *Error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return &Error{Reason: fmt.Sprintf("the body is not valid JSON (at byte %d)", se.Offset)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Reason: "the body ends in the middle of a JSON value"}
	default:
		return &Error{Reason: "the body is not valid JSON"}
	}
}

// fromJSONError maps an encoding/json decoding error to an *Error. The walk
// should have caught everything; this keeps the "every failure is an
// *Error" promise if it did not, without echoing input (the messages of
// UnmarshalTypeError and the unknown-field error quote it).
func fromJSONError(err error) *Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return &Error{Field: te.Field, Reason: "must be " + describe(te.Type), WrongType: true}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return syntaxError(err)
	}
	return &Error{Reason: "the body does not match the expected structure"}
}

// kind classifies what JSON a Go type accepts.
type kind uint8

const (
	kindAny    kind = iota // interface{}: any value, any keys, numbers as float64
	kindOpaque             // json.Unmarshaler, json.Number: the type's own rules apply
	kindStruct             // object with exactly the struct's keys
	kindMap                // object with any keys
	kindArray              // array (slice or array)
	kindString             // string (also encoding.TextUnmarshaler, ",string" fields)
	kindBytes              // string holding standard base64 ([]byte)
	kindBool               // true or false
	kindInt                // integer within bits
	kindUint               // non-negative integer within bits
	kindFloat              // number within bits
	kindNever              // a type no JSON value fits (chan, func, complex): only null
)

// shape is what the walk needs to know about a Go type.
type shape struct {
	kind   kind
	bits   int               // kindInt, kindUint, kindFloat
	elem   reflect.Type      // kindMap, kindArray; resolved lazily so recursive types terminate
	maxLen int               // kindArray from a Go array: its length; -1 for slices
	fields map[string]*field // kindStruct: exact JSON key -> field
}

type field struct {
	typ reflect.Type
	// quoted is set for the ",string" option on a scalar: the value is then
	// a JSON string holding the scalar, whatever typ is.
	quoted *shape
}

// shapes caches the shape of each Go type decoded into: computing it takes
// reflection, and types never change at run time. It is the package's only
// variable.
var shapes sync.Map // reflect.Type -> *shape

func shapeOf(t reflect.Type) *shape {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s, ok := shapes.Load(t); ok {
		return s.(*shape)
	}
	s, _ := shapes.LoadOrStore(t, newShape(t))
	return s.(*shape)
}

func newShape(t reflect.Type) *shape {
	// Types that decode themselves follow their own rules. encoding/json
	// calls UnmarshalJSON/UnmarshalText through a pointer, so check both.
	pt := reflect.PointerTo(t)
	if t == reflect.TypeFor[json.Number]() || pt.Implements(reflect.TypeFor[json.Unmarshaler]()) {
		return &shape{kind: kindOpaque}
	}
	if pt.Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		return &shape{kind: kindString}
	}
	switch t.Kind() {
	case reflect.Interface:
		return &shape{kind: kindAny}
	case reflect.Struct:
		return &shape{kind: kindStruct, fields: fieldsOf(t)}
	case reflect.Map:
		return &shape{kind: kindMap, elem: t.Elem()}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !reflect.PointerTo(t.Elem()).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) &&
			!reflect.PointerTo(t.Elem()).Implements(reflect.TypeFor[json.Unmarshaler]()) {
			return &shape{kind: kindBytes} // encoding/json reads []byte as base64
		}
		return &shape{kind: kindArray, elem: t.Elem(), maxLen: -1}
	case reflect.Array:
		return &shape{kind: kindArray, elem: t.Elem(), maxLen: t.Len()}
	case reflect.String:
		return &shape{kind: kindString}
	case reflect.Bool:
		return &shape{kind: kindBool}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &shape{kind: kindInt, bits: t.Bits()}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return &shape{kind: kindUint, bits: t.Bits()}
	case reflect.Float32, reflect.Float64:
		return &shape{kind: kindFloat, bits: t.Bits()}
	}
	return &shape{kind: kindNever}
}

// fieldsOf returns the exact JSON keys of struct type t, following
// encoding/json's rules: exported fields, the tag name or else the Go name,
// "-" skipped, untagged embedded structs promoted, the shallowest field of a
// name winning, a tagged one breaking a tie, remaining ties dropped. Should
// it ever accept a key encoding/json ignores, DisallowUnknownFields in the
// second pass still rejects it.
func fieldsOf(t reflect.Type) map[string]*field {
	type candidate struct {
		f      *field
		depth  int
		tagged bool
	}
	found := map[string][]candidate{}
	visiting := map[reflect.Type]bool{}
	var walk func(t reflect.Type, depth int)
	walk = func(t reflect.Type, depth int) {
		if visiting[t] {
			return // embedding cycle through pointers
		}
		visiting[t] = true
		defer delete(visiting, t)
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			ft := sf.Type
			if ft.Name() == "" && ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if sf.Anonymous {
				if !sf.IsExported() && ft.Kind() != reflect.Struct {
					continue
				}
				if name == "" && ft.Kind() == reflect.Struct {
					walk(ft, depth+1)
					continue
				}
			} else if !sf.IsExported() {
				continue
			}
			f := &field{typ: sf.Type}
			for o := range strings.SplitSeq(opts, ",") {
				if o == "string" {
					switch ft.Kind() {
					case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
						reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
						reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
						f.quoted = &shape{kind: kindString}
					}
				}
			}
			tagged := name != ""
			if name == "" {
				name = sf.Name
			}
			found[name] = append(found[name], candidate{f, depth, tagged})
		}
	}
	walk(t, 0)

	fields := map[string]*field{}
	for name, cs := range found {
		var best []candidate
		for _, c := range cs {
			switch {
			case len(best) == 0 || c.depth < best[0].depth:
				best = []candidate{c}
			case c.depth == best[0].depth:
				best = append(best, c)
			}
		}
		if len(best) > 1 {
			var tagged []candidate
			for _, c := range best {
				if c.tagged {
					tagged = append(tagged, c)
				}
			}
			best = tagged
		}
		if len(best) == 1 {
			fields[name] = best[0].f
		}
	}
	return fields
}

// walker checks the token stream against shapes.
type walker struct {
	dec *json.Decoder
}

// value checks the next value against s. path names it for errors.
func (w *walker) value(s *shape, path string, depth int) error {
	tok, err := w.dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	switch t := tok.(type) {
	case json.Delim: // '{' or '['; closers are consumed by object and array
		if depth+1 > MaxDepth {
			return &Error{Field: path, Reason: fmt.Sprintf("nesting is deeper than %d levels", MaxDepth)}
		}
		if t == '{' {
			if s.kind != kindStruct && s.kind != kindMap && s.kind != kindAny && s.kind != kindOpaque {
				return wrongType(path, s)
			}
			return w.object(s, path, depth+1)
		}
		if s.kind != kindArray && s.kind != kindAny && s.kind != kindOpaque {
			return wrongType(path, s)
		}
		return w.array(s, path, depth+1)
	case nil:
		return nil // null leaves the field as it is
	case bool:
		if s.kind != kindBool && s.kind != kindAny && s.kind != kindOpaque {
			return wrongType(path, s)
		}
	case string:
		switch s.kind {
		case kindString, kindAny, kindOpaque:
		case kindBytes:
			if _, err := base64.StdEncoding.DecodeString(t); err != nil {
				return &Error{Field: path, Reason: "must be a base64 string", WrongType: true}
			}
		default:
			return wrongType(path, s)
		}
	case json.Number:
		return checkNumber(t, s, path)
	}
	return nil
}

// object checks the members of an object whose '{' was just read.
func (w *walker) object(s *shape, path string, depth int) error {
	seen := map[string]struct{}{}
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		key, ok := tok.(string)
		if !ok {
			return &Error{Field: path, Reason: "the body is not valid JSON"}
		}
		kpath := join(path, key)
		if _, dup := seen[key]; dup {
			return &Error{Field: kpath, Reason: "the key appears more than once"}
		}
		seen[key] = struct{}{}
		child := s // kindAny and kindOpaque: members are the same
		switch s.kind {
		case kindStruct:
			f, ok := s.fields[key]
			if !ok {
				return &Error{Field: kpath, Reason: "unknown field (keys are case-sensitive)"}
			}
			child = f.quoted
			if child == nil {
				child = shapeOf(f.typ)
			}
		case kindMap:
			child = shapeOf(s.elem)
		}
		if err := w.value(child, kpath, depth); err != nil {
			return err
		}
	}
	return w.closer()
}

// array checks the elements of an array whose '[' was just read.
func (w *walker) array(s *shape, path string, depth int) error {
	child := s // kindAny and kindOpaque: elements are the same
	if s.kind == kindArray {
		child = shapeOf(s.elem)
	}
	for i := 0; w.dec.More(); i++ {
		if s.kind == kindArray && s.maxLen >= 0 && i >= s.maxLen {
			// encoding/json would silently drop the extra elements.
			return &Error{Field: path, Reason: fmt.Sprintf("must be an array of at most %d elements", s.maxLen), WrongType: true}
		}
		if err := w.value(child, path+"["+strconv.Itoa(i)+"]", depth); err != nil {
			return err
		}
	}
	return w.closer()
}

// closer consumes the '}' or ']' that ends the current container.
func (w *walker) closer() error {
	if _, err := w.dec.Token(); err != nil {
		return syntaxError(err)
	}
	return nil
}

// checkNumber checks a number against s the way encoding/json will parse
// it, so overflow is reported with its field rather than from deep inside
// encoding/json.
func checkNumber(n json.Number, s *shape, path string) error {
	var err error
	switch s.kind {
	case kindOpaque:
		return nil
	case kindAny:
		// encoding/json parses numbers for interface{} as float64.
		_, err = strconv.ParseFloat(string(n), 64)
	case kindInt:
		_, err = strconv.ParseInt(string(n), 10, s.bits)
	case kindUint:
		_, err = strconv.ParseUint(string(n), 10, s.bits)
	case kindFloat:
		_, err = strconv.ParseFloat(string(n), s.bits)
	default:
		return wrongType(path, s)
	}
	if err != nil {
		return &Error{Field: path, Reason: "must be " + describeShape(s) + " within range", WrongType: true}
	}
	return nil
}

func wrongType(path string, s *shape) *Error {
	return &Error{Field: path, Reason: "must be " + describeShape(s), WrongType: true}
}

func describeShape(s *shape) string {
	switch s.kind {
	case kindStruct, kindMap:
		return "an object"
	case kindArray:
		return "an array"
	case kindString:
		return "a string"
	case kindBytes:
		return "a base64 string"
	case kindBool:
		return "true or false"
	case kindInt, kindUint:
		return "an integer"
	case kindFloat:
		return "a number"
	case kindNever:
		return "null"
	}
	return "a JSON value"
}

func describe(t reflect.Type) string {
	if t == nil {
		return "a different type"
	}
	return describeShape(shapeOf(t))
}

// join appends key to a JSON path, truncating long keys (they come from the
// client) at a rune boundary.
func join(path, key string) string {
	if len(key) > maxFieldLen {
		cut := maxFieldLen
		for cut > 0 && !utf8.RuneStart(key[cut]) {
			cut--
		}
		key = key[:cut] + "…"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}
