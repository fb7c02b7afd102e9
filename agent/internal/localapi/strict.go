package localapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// DecodeJSON reads a strict JSON body into v: application/json only, one JSON
// value, names exactly as documented (encoding/json alone would take "AMOUNT"
// for "amount"), no unknown or repeated names, size capped. The error is ready
// to answer and names the field by its path, e.g. receipt.items[1].price.
func DecodeJSON(r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return Errorf("unsupported_media_type", "send Content-Type: application/json")
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return jsonError(err)
	}
	return DecodeJSONBytes(b, v)
}

// DecodeJSONBytes is DecodeJSON for a body already read.
func DecodeJSONBytes(b []byte, v any) error {
	if err := checkStrict(b, reflect.TypeOf(v)); err != nil {
		return err
	}
	// The walk has checked names and kinds; encoding/json fills v (and would
	// still refuse what the walk missed).
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	return nil
}

// maxDepth bounds nesting; no request of the API is deeper than a few levels.
const maxDepth = 32

// checkStrict walks the JSON in b against t the way encoding/json would fill
// a value of type t, refusing what encoding/json lets through or reports
// poorly: names that match only case-insensitively, repeated names, values of
// the wrong kind (named by full path, in words rather than Go types).
func checkStrict(b []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	w := walker{dec: dec}
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return Errorf("bad_request", "the body is empty; send a JSON object")
	}
	if err != nil {
		return jsonError(err)
	}
	if err := w.value(tok, t, "", 0); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf("bad_request", "the body must hold exactly one JSON object")
	}
	return nil
}

type walker struct{ dec *json.Decoder }

// token is the next token; the input ending inside a value is an early end,
// not the empty body io.EOF would say.
func (w *walker) token() (json.Token, error) {
	tok, err := w.dec.Token()
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, jsonError(err)
	}
	return tok, nil
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// ownDecoding: the type reads its own JSON, so only names (repeats) are
// checked inside it.
func ownDecoding(t reflect.Type) bool {
	return t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) ||
		t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)
}

// value checks the value that starts with tok; t nil means "any JSON".
func (w *walker) value(tok json.Token, t reflect.Type, path string, depth int) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Kind() == reflect.Interface || ownDecoding(t)) {
		t = nil
	}
	switch v := tok.(type) {
	case nil:
		return nil // null leaves the field as it is, as encoding/json does
	case json.Delim:
		if depth >= maxDepth {
			return Errorf("bad_request", fmt.Sprintf("%s is nested more than %d levels deep", where(path), maxDepth))
		}
		if v == '{' {
			return w.object(t, path, depth+1)
		}
		return w.array(t, path, depth+1)
	case string:
		if t != nil && t.Kind() != reflect.String && !(t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8) {
			return wrongKind(path, t)
		}
	case bool:
		if t != nil && t.Kind() != reflect.Bool {
			return wrongKind(path, t)
		}
	case json.Number:
		if t != nil {
			return checkNumber(v, t, path)
		}
	}
	return nil
}

func (w *walker) object(t reflect.Type, path string, depth int) error {
	var fields map[string]fieldInfo
	var elem reflect.Type
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = structFields(t)
	case t.Kind() == reflect.Map:
		elem = t.Elem()
	default:
		return wrongKind(path, t)
	}
	seen := map[string]bool{}
	for w.dec.More() {
		tok, err := w.token()
		if err != nil {
			return err
		}
		name := tok.(string) // object keys are strings, or Token fails
		p := name
		if path != "" {
			p = path + "." + name
		}
		if seen[name] {
			return Errorf("bad_request", fmt.Sprintf("field %q appears twice", p))
		}
		seen[name] = true
		ft := elem
		if fields != nil {
			f, ok := fields[name]
			if !ok {
				return unknownField(p, name, fields)
			}
			ft = f.typ
		}
		if tok, err = w.token(); err != nil {
			return err
		}
		if err := w.value(tok, ft, p, depth); err != nil {
			return err
		}
	}
	_, err := w.token() // '}'
	return err
}

func (w *walker) array(t reflect.Type, path string, depth int) error {
	var elem reflect.Type
	if t != nil {
		if k := t.Kind(); k != reflect.Slice && k != reflect.Array {
			return wrongKind(path, t)
		}
		elem = t.Elem()
	}
	for i := 0; w.dec.More(); i++ {
		tok, err := w.token()
		if err != nil {
			return err
		}
		if err := w.value(tok, elem, fmt.Sprintf("%s[%d]", path, i), depth); err != nil {
			return err
		}
	}
	_, err := w.token() // ']'
	return err
}

func unknownField(path, name string, fields map[string]fieldInfo) error {
	msg := fmt.Sprintf("unknown field %q (check the spelling; names are case-sensitive)", path)
	for known := range fields {
		if strings.EqualFold(known, name) {
			msg = fmt.Sprintf("unknown field %q: did you mean %q? (names are case-sensitive)", path, known)
			break
		}
	}
	return Errorf("unknown_field", msg)
}

func checkNumber(n json.Number, t reflect.Type, path string) error {
	bad := func(word string) error { return Errorf("bad_request", fmt.Sprintf("%s must be %s", where(path), word)) }
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			if isWhole(n) {
				lim := int64(1)<<(t.Bits()-1) - 1
				return bad(fmt.Sprintf("a whole number from %d to %d", -lim-1, lim))
			}
			return bad("a whole number")
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			if isWhole(n) {
				return bad(fmt.Sprintf("a whole number from 0 to %d", uint64(math.MaxUint64)>>(64-t.Bits())))
			}
			return bad("a whole number, not negative")
		}
	case reflect.Float32, reflect.Float64:
		if _, err := strconv.ParseFloat(string(n), t.Bits()); err != nil {
			return bad("a number in range")
		}
	default:
		return wrongKind(path, t)
	}
	return nil
}

// isWhole: n is written as a whole number (so the range was the problem).
func isWhole(n json.Number) bool {
	return !strings.ContainsAny(string(n), ".eE")
}

func where(path string) string {
	if path == "" {
		return "the body"
	}
	return fmt.Sprintf("field %q", path)
}

// kindWord names what a value of type t looks like in JSON, for people.
func kindWord(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a whole number, not negative"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			return "a base64 string"
		}
		return "an array"
	default:
		return "a different kind of value"
	}
}

func wrongKind(path string, t reflect.Type) error {
	return Errorf("bad_request", fmt.Sprintf("%s must be %s", where(path), kindWord(t)))
}

type fieldInfo struct {
	typ   reflect.Type
	depth int
}

var fieldCache sync.Map // reflect.Type -> map[string]fieldInfo

// structFields are the JSON names encoding/json fills in t, exactly as
// spelled: tagged names, untagged exported field names, and the fields of
// embedded structs (the shallower one wins a clash, as in encoding/json).
func structFields(t reflect.Type) map[string]fieldInfo {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]fieldInfo)
	}
	m := map[string]fieldInfo{}
	collectFields(t, 0, m, map[reflect.Type]bool{})
	fieldCache.Store(t, m)
	return m
}

func collectFields(t reflect.Type, depth int, m map[string]fieldInfo, visiting map[reflect.Type]bool) {
	if visiting[t] {
		return
	}
	visiting[t] = true
	defer delete(visiting, t)
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		if strings.Contains(","+opts+",", ",string,") {
			ft = nil // ",string" takes the value quoted: encoding/json checks it
		}
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				collectFields(et, depth+1, m, visiting)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if prev, ok := m[name]; !ok || depth < prev.depth {
			m[name] = fieldInfo{typ: ft, depth: depth}
		}
	}
}

func jsonError(err error) error {
	var tooBig *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return Wrap("body_too_large", fmt.Sprintf("the body is larger than %d bytes (1 MiB)", MaxBody), err)
	case errors.Is(err, io.EOF):
		return Errorf("bad_request", "the body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Wrap("bad_request", "the JSON ends early", err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return Wrap("unknown_field", strings.TrimPrefix(err.Error(), "json: ")+" (check the spelling)", err)
	case errors.As(err, &syn):
		return Wrap("bad_request", fmt.Sprintf("invalid JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: ")), err)
	case errors.As(err, &typ):
		return Wrap("bad_request", fmt.Sprintf("%s must be %s", where(typ.Field), kindWord(typ.Type)), err)
	default:
		return Wrap("bad_request", "invalid JSON: "+strings.TrimPrefix(err.Error(), "json: "), err)
	}
}
