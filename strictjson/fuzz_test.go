package strictjson_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/strictjson"
)

// FuzzDecode checks that Decode never panics, that every failure is an
// *Error, and that whatever it accepts encoding/json accepts too, with the
// same result.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"email":"a@b.c","password":"secret"}`))
	f.Add([]byte(`{"inner":{"a":1,"a":2}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var got everything
		err := strictjson.Decode(data, &got)
		if err != nil {
			var e *strictjson.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not *strictjson.Error", err, err)
			}
			if !utf8.ValidString(e.Error()) {
				t.Fatalf("error message is not valid UTF-8: %q", e.Error())
			}
			return
		}
		if !utf8.Valid(data) || !json.Valid(data) {
			t.Fatalf("accepted invalid input %q", data)
		}
		var want everything
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("Decode accepted %q, encoding/json refused it: %v", data, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode and encoding/json disagree on %q:\n%+v\n%+v", data, got, want)
		}
	})
}
