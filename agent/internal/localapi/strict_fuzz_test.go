package localapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecodeJSON: whatever the strict decoder accepts, encoding/json accepts
// too and reads the same; what it refuses is refused with a documented code
// and a message; it never panics. Accepted values survive a round trip.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","amount":1,"inner":{"code":"c","qty":2},"items":[{"code":"d"}],"tags":{"A":1,"a":2},"any":{"X":[1]}}`,
		`{"AMOUNT":0}`, `{"name":"a","name":"b"}`, `{"inner":{"CODE":"x"}}`, `{"items":[{},{"qty":"x"}]}`,
		`{"count":256}`, `{"amount":-9223372036854775808}`, `{"amount":1e3}`, `{"ratio":1e400}`,
		`{"any":[[[[{"a":{"a":1,"a":2}}]]]]}`, `{"tags":{"\u0041":1,"A":2}}`, `{"na\u006de":"x"}`,
		`[]`, `null`, `{}`, ``, `{"name":"a"} x`, `{"name":"a"`, `{"inner":null,"items":null}`, `"\ud800"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got strictBody
		err := DecodeJSONBytes(b, &got)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || (ae.Code != "bad_request" && ae.Code != "unknown_field") || ae.Message == "" {
				t.Fatalf("refused %q with an undocumented error: %v", b, err)
			}
			return
		}
		var std strictBody
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&std); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", b, err)
		}
		if !reflect.DeepEqual(got, std) {
			t.Fatalf("%q read as %+v, encoding/json reads %+v", b, got, std)
		}
		again, err := json.Marshal(got)
		if err != nil {
			return // a float out of JSON's range cannot occur: checked above
		}
		var round strictBody
		if err := DecodeJSONBytes(again, &round); err != nil {
			t.Fatalf("refused its own output %s: %v", again, err)
		}
	})
}
