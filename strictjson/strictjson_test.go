package strictjson_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/strictjson"
)

type login struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type inner struct {
	A int `json:"a"`
	B int `json:"b"`
}

type Embedded struct {
	Note string `json:"note"`
}

type everything struct {
	Embedded
	Name    string            `json:"name"`
	Age     int8              `json:"age"`
	Count   uint16            `json:"count"`
	Ratio   float32           `json:"ratio"`
	OK      bool              `json:"ok"`
	Tags    []string          `json:"tags"`
	Pair    [2]int            `json:"pair"`
	Inner   inner             `json:"inner"`
	Ptr     *inner            `json:"ptr"`
	List    []inner           `json:"list"`
	Meta    map[string]string `json:"meta"`
	Any     any               `json:"any"`
	Raw     json.RawMessage   `json:"raw"`
	Blob    []byte            `json:"blob"`
	Quoted  int               `json:"quoted,string"`
	NoTag   string
	Ignored string `json:"-"`
	private string //nolint:unused // must stay unreachable from JSON
}

// decodeErr runs Decode and returns the *Error, failing the test if Decode
// accepted the input or returned another error type.
func decodeErr(t *testing.T, data string, v any) *strictjson.Error {
	t.Helper()
	err := strictjson.Decode([]byte(data), v)
	if err == nil {
		t.Fatalf("Decode(%.80q) accepted, want an error", data)
	}
	var e *strictjson.Error
	if !errors.As(err, &e) {
		t.Fatalf("Decode(%.80q) error %T %v is not *strictjson.Error", data, err, err)
	}
	if e.Reason == "" {
		t.Fatalf("Decode(%.80q): empty Reason", data)
	}
	return e
}

func TestAcceptsLogin(t *testing.T) {
	var l login
	if err := strictjson.Decode([]byte(` {"email":"a@b.c","password":"pässwörd 🔑"} `+"\n"), &l); err != nil {
		t.Fatal(err)
	}
	if l != (login{"a@b.c", "pässwörd 🔑"}) {
		t.Fatalf("got %+v", l)
	}
}

func TestAcceptsEverything(t *testing.T) {
	const body = `{"note":"n","name":"x","age":-128,"count":65535,"ratio":1.5,"ok":true,
		"tags":["a","b"],"pair":[1,2],"inner":{"a":1,"b":2},"ptr":{"a":3},"list":[{"a":4},{"b":5}],
		"meta":{"Any Key":"v","any key":"w"},"any":{"x":[1,{"y":null}],"X":1},"raw":{"k":1,"K":2},
		"blob":"aGk=","quoted":"42","NoTag":"t","emoji\ud83d\ude00":null}`
	var got everything
	// The last key is unknown: check everything else first.
	e := decodeErr(t, body, &got)
	if e.Field != "emoji😀" {
		t.Fatalf("unknown key reported as %q", e.Field)
	}
	body2 := strings.Replace(body, `,"emoji\ud83d\ude00":null`, "", 1)
	if err := strictjson.Decode([]byte(body2), &got); err != nil {
		t.Fatal(err)
	}
	if got.Note != "n" || got.Age != -128 || got.Count != 65535 || got.Ptr == nil || got.Ptr.A != 3 ||
		got.Quoted != 42 || string(got.Blob) != "hi" || got.NoTag != "t" || got.Meta["any key"] != "w" ||
		len(got.List) != 2 || got.Pair != [2]int{1, 2} {
		t.Fatalf("decoded %+v", got)
	}
}

func TestNullLeavesZero(t *testing.T) {
	var got everything
	body := `{"name":null,"age":null,"ok":null,"tags":null,"inner":null,"ptr":null,"meta":null,"any":null,"blob":null,"quoted":null}`
	if err := strictjson.Decode([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != "" || got.Ptr != nil || got.Tags != nil {
		t.Fatalf("got %+v", got)
	}
}

func TestEmpty(t *testing.T) {
	for _, body := range []string{"", " ", "\n\t "} {
		e := decodeErr(t, body, &login{})
		if e.WrongType || e.Field != "" {
			t.Errorf("%q: %+v", body, e)
		}
	}
}

func TestTopLevelMustBeObject(t *testing.T) {
	for _, body := range []string{`[]`, `[{"email":"a"}]`, `"x"`, `1`, `null`, `true`} {
		e := decodeErr(t, body, &login{})
		if !strings.Contains(e.Reason, "object") {
			t.Errorf("%s: reason %q", body, e.Reason)
		}
	}
}

func TestTrailingData(t *testing.T) {
	for _, body := range []string{`{}{}`, `{"email":"a"} {}`, `{}x`, `{}]`, `{} null`, `{}}`} {
		decodeErr(t, body, &login{})
	}
}

func TestSyntax(t *testing.T) {
	for _, body := range []string{`{`, `{"email"}`, `{"email":}`, `{"email":"a",}`, `{'email':"a"}`,
		`{"email":"a"`, `{"email":"a\x"}`, "{\"email\":\"a\x01\"}", `{email:"a"}`, `{"email":01}`} {
		e := decodeErr(t, body, &login{})
		if e.WrongType {
			t.Errorf("%q: WrongType for a syntax error", body)
		}
	}
}

func TestCaseSensitiveKeys(t *testing.T) {
	for _, body := range []string{`{"Email":"a@b.c"}`, `{"EMAIL":"a@b.c"}`, `{"email":"a@b.c","Password":"x"}`,
		// U+212A KELVIN SIGN folds to k under encoding/json's matching.
		`{"email":"a","\u212Aey":1}`} {
		var l login
		e := decodeErr(t, body, &l)
		if e.Field == "" || !strings.Contains(e.Reason, "unknown") {
			t.Errorf("%s: %+v", body, e)
		}
		if l != (login{}) {
			t.Errorf("%s: target modified to %+v", body, l)
		}
	}
	e := decodeErr(t, `{"email":"a","Password":"x"}`, &login{})
	if e.Field != "Password" {
		t.Errorf("field = %q, want Password", e.Field)
	}
}

func TestUnknownNestedKey(t *testing.T) {
	e := decodeErr(t, `{"inner":{"a":1,"c":2}}`, &everything{})
	if e.Field != "inner.c" {
		t.Errorf("field = %q, want inner.c", e.Field)
	}
	e = decodeErr(t, `{"list":[{"a":1},{"A":2}]}`, &everything{})
	if e.Field != "list[1].A" {
		t.Errorf("field = %q, want list[1].A", e.Field)
	}
	// Ignored and unexported fields are not reachable either.
	for _, k := range []string{"Ignored", "private", "-", "Embedded"} {
		if e := decodeErr(t, `{"`+k+`":"x"}`, &everything{}); e.Field != k {
			t.Errorf("%s: field %q", k, e.Field)
		}
	}
}

func TestDuplicateKeys(t *testing.T) {
	cases := map[string]string{
		`{"email":"a@b.c","email":"evil@x.y"}`:    "email",
		`{"email":"a","em\u0061il":"b"}`:          "email", // same key after unescaping
		`{"inner":{"a":1,"a":2}}`:                 "inner.a",
		`{"meta":{"k":"1","k":"2"}}`:              "meta.k",
		`{"any":{"x":{"y":1,"y":1}}}`:             "any.x.y",
		`{"raw":{"k":1,"k":2}}`:                   "raw.k",
		`{"list":[{"b":1},{"b":1,"a":2,"b":3}]}`:  "list[1].b",
		`{"email":"a","password":"p","email":""}`: "email",
	}
	for body, field := range cases {
		var v everything
		if strings.Contains(body, `"email"`) || strings.Contains(body, `em\u0061il`) {
			e := decodeErr(t, body, &login{})
			if e.Field != field || !strings.Contains(e.Reason, "more than once") {
				t.Errorf("%s: %+v", body, e)
			}
			continue
		}
		e := decodeErr(t, body, &v)
		if e.Field != field || !strings.Contains(e.Reason, "more than once") {
			t.Errorf("%s: %+v", body, e)
		}
	}
}

// TestNestedDuplicateSameName uses the shape from the brief: a struct whose
// nested struct has a field of the same name as the outer one.
func TestNestedDuplicateSameName(t *testing.T) {
	type in struct {
		A int `json:"a"`
	}
	type out struct {
		A in `json:"a"`
	}
	var v out
	e := decodeErr(t, `{"a":{"a":1,"a":2}}`, &v)
	if e.Field != "a.a" {
		t.Errorf("field = %q, want a.a", e.Field)
	}
	if err := strictjson.Decode([]byte(`{"a":{"a":1}}`), &v); err != nil || v.A.A != 1 {
		t.Errorf("Decode = %v, %+v", err, v)
	}
}

func TestDepth(t *testing.T) {
	nest := func(n int) string { // n levels in total, the top object included
		return `{"any":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + `}`
	}
	if err := strictjson.Decode([]byte(nest(strictjson.MaxDepth)), &everything{}); err != nil {
		t.Fatalf("depth %d: %v", strictjson.MaxDepth, err)
	}
	e := decodeErr(t, nest(strictjson.MaxDepth+1), &everything{})
	if !strings.Contains(e.Reason, "deeper") {
		t.Errorf("depth 33: %+v", e)
	}
	// 10k unclosed brackets: rejected at depth 33, not by reading them all.
	for _, body := range []string{
		`{"any":` + strings.Repeat("[", 10000),
		`{"any":` + strings.Repeat(`{"a":`, 10000),
		strings.Repeat("[", 10000),
		strings.Repeat("{", 10000),
	} {
		decodeErr(t, body, &everything{})
	}
	// Well-formed but deep (below encoding/json's own limit of 10000).
	deep := `{"any":` + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + `}`
	if e := decodeErr(t, deep, &everything{}); !strings.Contains(e.Reason, "deeper") {
		t.Errorf("9000 brackets: %+v", e)
	}
	deep = `{"inner":` + strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100) + `}`
	if e := decodeErr(t, deep, &everything{}); e.Field == "" {
		t.Errorf("100 objects: %+v", e)
	}
}

func TestInvalidUTF8(t *testing.T) {
	for _, body := range []string{
		"{\"email\":\"a\xffb\"}",
		"{\"email\":\"\xc3\"}",
		"{\"em\xe9il\":\"a\"}",
		"{\"email\":\"a\"}\xff",
		"{\"email\":\"\xed\xa0\x80\"}", // UTF-8-encoded surrogate
	} {
		e := decodeErr(t, body, &login{})
		if !strings.Contains(e.Reason, "UTF-8") {
			t.Errorf("%q: %+v", body, e)
		}
	}
}

func TestLoneSurrogates(t *testing.T) {
	for _, body := range []string{
		`{"email":"\ud800"}`,
		`{"email":"a\uDBFFb"}`,
		`{"email":"\udc00"}`,
		`{"email":"\ud800\u0041"}`,
		`{"email":"\ud800\ud800"}`,
		`{"email":"\udc00\ud800"}`,
		`{"\ud800":"x"}`,
		`{"email":"\\\ud800"}`,
	} {
		e := decodeErr(t, body, &login{})
		if !strings.Contains(e.Reason, "surrogate") {
			t.Errorf("%s: %+v", body, e)
		}
	}
	// Not surrogates: a proper pair, an escaped backslash before "ud800",
	// and the text \ud800 outside any escape.
	var l login
	for body, want := range map[string]string{
		`{"email":"\ud83d\ude00"}`: "😀",
		`{"email":"\\ud800"}`:      `\ud800`,
		`{"email":"\"\\ud800"}`:    `"\ud800`,
		`{"email":"\uFFFD"}`:       "\uFFFD",
	} {
		if err := strictjson.Decode([]byte(body), &l); err != nil || l.Email != want {
			t.Errorf("%s: %v, %q", body, err, l.Email)
		}
	}
}

func TestWrongTypes(t *testing.T) {
	cases := map[string]string{
		`{"email":1}`:                   "email",
		`{"email":true}`:                "email",
		`{"email":{}}`:                  "email",
		`{"email":["a"]}`:               "email",
		`{"password":{"x":1}}`:          "password",
		`{"email":"a","password":1.5}`:  "password",
		`{"email":"a","password":[]}`:   "password",
		`{"email":"a","password":null}`: "", // null is fine: see below
	}
	for body, field := range cases {
		if field == "" {
			if err := strictjson.Decode([]byte(body), &login{}); err != nil {
				t.Errorf("%s: %v", body, err)
			}
			continue
		}
		e := decodeErr(t, body, &login{})
		if e.Field != field || !e.WrongType || !strings.Contains(e.Reason, "string") {
			t.Errorf("%s: %+v", body, e)
		}
		if strings.Contains(e.Error(), "1.5") || strings.Contains(e.Error(), `"a"`) {
			t.Errorf("%s: error echoes input: %v", body, e)
		}
	}
	more := map[string]string{
		`{"age":"1"}`:              "age",
		`{"age":1.5}`:              "age",
		`{"age":1e2}`:              "age",
		`{"count":-1}`:             "count",
		`{"ok":"true"}`:            "ok",
		`{"ok":1}`:                 "ok",
		`{"tags":"a"}`:             "tags",
		`{"tags":[1]}`:             "tags[0]",
		`{"inner":[]}`:             "inner",
		`{"inner":{"a":"1"}}`:      "inner.a",
		`{"list":[{"a":1},"x"]}`:   "list[1]",
		`{"meta":{"k":1}}`:         "meta.k",
		`{"meta":[]}`:              "meta",
		`{"pair":[1,2,3]}`:         "pair",
		`{"blob":"not base64!"}`:   "blob",
		`{"blob":[1]}`:             "blob",
		`{"quoted":42}`:            "quoted",
		`{"ratio":"1"}`:            "ratio",
		`{"ptr":{"b":true}}`:       "ptr.b",
		`{"note":5}`:               "note",
		`{"name":{"nested":true}}`: "name",
	}
	for body, field := range more {
		e := decodeErr(t, body, &everything{})
		if e.Field != field || !e.WrongType {
			t.Errorf("%s: %+v, want field %q", body, e, field)
		}
	}
}

func TestHugeNumbers(t *testing.T) {
	cases := map[string]string{
		`{"age":128}`:        "age",
		`{"age":-129}`:       "age",
		`{"count":65536}`:    "count",
		`{"ratio":1e39}`:     "ratio", // beyond float32
		`{"any":1e400}`:      "any",   // beyond float64
		`{"any":[1,-1e999]}`: "any[1]",
		`{"meta":{"k":"v"},"count":1` + strings.Repeat("0", 400) + `}`: "count",
		`{"inner":{"a":99999999999999999999}}`:                         "inner.a",
	}
	for body, field := range cases {
		e := decodeErr(t, body, &everything{})
		if e.Field != field || !e.WrongType {
			t.Errorf("%.60s: %+v, want field %q", body, e, field)
		}
	}
	// Big but representable, and opaque types keep their own rules.
	var v everything
	if err := strictjson.Decode([]byte(`{"age":127,"count":0,"ratio":3.4e38,"any":1e308,"raw":1e400}`), &v); err != nil {
		t.Fatal(err)
	}
}

func TestBadTarget(t *testing.T) {
	var l login
	var m map[string]any
	for _, v := range []any{nil, l, &m, (*login)(nil), new(int)} {
		err := strictjson.Decode([]byte(`{}`), v)
		var e *strictjson.Error
		if !errors.As(err, &e) {
			t.Errorf("%T: %v", v, err)
		}
	}
}

func TestErrorString(t *testing.T) {
	e := &strictjson.Error{Field: "email", Reason: "must be a string"}
	if got := e.Error(); got != `strictjson: field "email": must be a string` {
		t.Errorf("Error() = %q", got)
	}
	e = &strictjson.Error{Reason: "the body is empty"}
	if got := e.Error(); got != "strictjson: the body is empty" {
		t.Errorf("Error() = %q", got)
	}
}

func TestLongKeyTruncatedInField(t *testing.T) {
	key := strings.Repeat("é", 1000)
	e := decodeErr(t, `{"`+key+`":1}`, &login{})
	if len(e.Field) > 80 || !strings.HasPrefix(key, strings.TrimSuffix(e.Field, "…")) {
		t.Errorf("field %q", e.Field)
	}
}

// TestAgreesWithEncodingJSON checks that what Decode accepts decodes to the
// same value as encoding/json would produce.
func TestAgreesWithEncodingJSON(t *testing.T) {
	body := []byte(`{"name":"x","inner":{"a":1},"tags":["a"],"any":{"k":[1,"2",null]},"NoTag":"y"}`)
	var a, b everything
	if err := strictjson.Decode(body, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatalf("Decode %s != encoding/json %s", ja, jb)
	}
}

func BenchmarkDecodeLogin(b *testing.B) {
	body := []byte(`{"email":"alice@example.com","password":"correct horse battery staple"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var l login
		if err := strictjson.Decode(body, &l); err != nil {
			b.Fatal(err)
		}
	}
}
