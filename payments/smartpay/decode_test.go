package smartpay

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"kassa-agent/payments"
	"kassa-agent/payments/smartpay/internal/wire"
)

func TestStatusWords(t *testing.T) {
	cases := map[string]State{
		"committed": StateCommitted, "COMMITTED": StateCommitted, " commited ": StateCommitted,
		"processing": StateProcessing, "pending": StateProcessing, "in-progress": StateProcessing,
		"In Progress": StateProcessing, "wait": StateProcessing, "released": StateProcessing,
		"success": StateSuccess, "SUCCESS": StateSuccess, "succeeded": StateSuccess, "paid": StateSuccess,
		"completed": StateSuccess, "successful": StateSuccess,
		"declined": StateDeclined, "rejected": StateDeclined, "denied": StateDeclined,
		"failed": StateFailed, "FAIL": StateFailed, "failure": StateFailed,
		"expired":  StateExpired,
		"canceled": StateCanceled, "cancelled": StateCanceled, "CANCEL": StateCanceled,
		// Never guessed: these stay unknown, and unknown is never success.
		"": StateUnknown, "ok": StateUnknown, "success?": StateUnknown, "not_success": StateUnknown,
		"refunded": StateUnknown, "reversed": StateUnknown, "error": StateUnknown, "hold": StateUnknown,
		"unpaid": StateUnknown, "payment_success_pending": StateUnknown, "null": StateUnknown, "1": StateUnknown,
		"successs": StateUnknown, "suссess": StateUnknown, // Cyrillic с
	}
	for word, want := range cases {
		if got := stateOf(word); got != want {
			t.Errorf("%q → %v, want %v", word, got, want)
		}
	}
	finals := map[State]bool{StateSuccess: true, StateDeclined: true, StateFailed: true, StateExpired: true, StateCanceled: true}
	for _, s := range []State{StateCommitted, StateProcessing, StateSuccess, StateDeclined, StateFailed, StateExpired, StateCanceled, StateUnknown} {
		if s.Final() != finals[s] {
			t.Errorf("%v.Final() = %v", s, s.Final())
		}
		ps, ok := s.Payment()
		if ok != (s != StateUnknown) || (ok && !ps.Valid()) {
			t.Errorf("%v.Payment() = %v %v", s, ps, ok)
		}
		if ps.MoneyTaken() != (s == StateSuccess) {
			t.Errorf("%v money taken = %v", s, ps.MoneyTaken())
		}
	}
	// Every meaning the wire file can produce has a state of its own.
	for m := wire.MeaningCommitted; m <= wire.MeaningCanceled; m++ {
		seen := false
		for _, w := range []string{"committed", "processing", "success", "declined", "failed", "expired", "canceled"} {
			if wire.StatusMeaning(w) == m {
				seen = stateOf(w) != StateUnknown
			}
		}
		if !seen {
			t.Errorf("meaning %d has no state", m)
		}
	}
}

func TestDecodeStatus(t *testing.T) {
	st, err := decodeStatus([]byte(`{"status":"declined","reason":"limit\nexceeded"}`))
	if err != nil || st.State != StateDeclined || st.Reason != "limit exceeded" || st.Raw != "declined" {
		t.Fatalf("%+v %v", st, err)
	}
	for _, bad := range []string{``, `null`, `{}`, `{"status":""}`, `{"status":1}`, `[]`, `"success"`, `{"status":"success"`, `<html>`} {
		if st, err := decodeStatus([]byte(bad)); err == nil {
			t.Errorf("%q decoded as %+v", bad, st)
		}
	}
}

func TestErrorFromResponse(t *testing.T) {
	cases := []struct {
		op     Op
		status int
		body   string
		class  Class
		code   string
	}{
		{OpCommit, 422, `{"error":{"code":"code_expired","message":"lapsed"}}`, ClassCodeRejected, "code_expired"},
		{OpCommit, 422, `garbage`, ClassCodeRejected, ""},
		{OpRelease, 422, `{"error":{"code":"code_expired"}}`, ClassCodeRejected, "code_expired"},
		{OpRelease, 422, `{"error":{"code":"invalid_amount"}}`, ClassRejected, "invalid_amount"},
		{OpFiscal, 422, `{"code":"CODE_UNKNOWN","message":"flat shape"}`, ClassCodeRejected, "CODE_UNKNOWN"},
		{OpCommit, 409, `{"error":{"code":"code_committed"}}`, ClassConflict, "code_committed"},
		{OpStatus, 404, ``, ClassNotFound, ""},
		{OpStatus, 401, ``, ClassUnauthorized, ""},
		{OpStatus, 403, `{"detail":"forbidden"}`, ClassUnauthorized, ""},
		{OpRelease, 500, ``, ClassAmbiguous, ""},
		{OpRelease, 502, `<html>bad gateway</html>`, ClassAmbiguous, ""},
		{OpRelease, 503, `{"error":"maintenance"}`, ClassAmbiguous, ""},
		{OpRelease, 504, ``, ClassAmbiguous, ""},
		{OpRelease, 429, ``, ClassUnavailable, ""},
		{OpRelease, 408, ``, ClassUnavailable, ""},
		{OpRelease, 400, `{"error":{"code":7,"message":"m"}}`, ClassRejected, ""},
		{OpRelease, 400, `{"code":7}`, ClassRejected, "7"},
		{OpRelease, 302, ``, ClassRejected, ""},
		{OpRelease, 418, ``, ClassRejected, ""},
	}
	for _, c := range cases {
		e := errorFromResponse(c.op, c.status, []byte(c.body), nil)
		if e.Class != c.class || e.Code != c.code || e.HTTPStatus != c.status || e.Op != c.op {
			t.Errorf("%s %d %s → %+v", c.op, c.status, c.body, e)
		}
	}
	e := errorFromResponse(OpCommit, 409, []byte(`{"error":{"code":"code_committed","message":"code https://qr.x/c/SECRETSECRET is taken"}}`),
		[]string{"https://qr.x/c/SECRETSECRET"})
	if strings.Contains(e.Error(), "SECRET") || !strings.Contains(e.Error(), "[redacted]") {
		t.Fatalf("message not scrubbed: %v", e)
	}
}

func TestErrorMatchesPaymentClasses(t *testing.T) {
	want := map[Class]error{
		ClassAmbiguous: payments.ErrAmbiguous, ClassUnavailable: payments.ErrUnavailable,
		ClassUnauthorized: payments.ErrUnauthorized, ClassCodeRejected: payments.ErrRejected,
		ClassConflict: payments.ErrRejected, ClassNotFound: payments.ErrRejected, ClassRejected: payments.ErrRejected,
	}
	all := []error{payments.ErrAmbiguous, payments.ErrUnavailable, payments.ErrUnauthorized, payments.ErrRejected}
	for class, target := range want {
		err := fmt.Errorf("outer: %w", &Error{Op: OpRelease, Class: class})
		for _, other := range all {
			if errors.Is(err, other) != (other == target) {
				t.Errorf("%v is %v: %v", class, other, errors.Is(err, other))
			}
		}
		if ClassOf(err) != class || class.String() == "" || strings.HasPrefix(class.String(), "class(") {
			t.Errorf("ClassOf/String %v", class)
		}
	}
	if ClassOf(errors.New("plain")) != 0 || IsAmbiguous(nil) {
		t.Fatal("non-client errors have no class")
	}
	inner := errors.New("connection reset by peer")
	e := &Error{Op: OpRelease, Class: ClassAmbiguous, HTTPStatus: 0, Message: "no answer", Err: inner}
	if !errors.Is(e, inner) || e.Error() != "smartpay release: ambiguous: no answer: connection reset by peer" {
		t.Fatalf("%v", e)
	}
}

func TestRedactBody(t *testing.T) {
	body, _ := json.Marshal(wire.CommitRequest{Code: "https://qr.smartpay.example/c/TOPSECRETTOKEN123", KassaPurchaseID: "kp-9"})
	out, secrets := redactBody(body)
	if strings.Contains(out, "TOPSECRET") || !strings.Contains(out, `"kassa_purchase_id":"kp-9"`) || !strings.Contains(out, "redacted:") {
		t.Fatalf("%s", out)
	}
	if len(secrets) != 1 || secrets[0] != "https://qr.smartpay.example/c/TOPSECRETTOKEN123" {
		t.Fatalf("secrets %q", secrets)
	}
	out, _ = redactBody([]byte(`{"Token":"abcdefgh","error":{"code":"code_expired"}}`))
	if strings.Contains(out, "abcdefgh") || !strings.Contains(out, "code_expired") {
		t.Fatalf("%s", out)
	}
	if out, _ := redactBody([]byte("bare-token-value")); strings.Contains(out, "bare") {
		t.Fatalf("non-JSON logged: %s", out)
	}
	if out, _ := redactBody(nil); out != "" {
		t.Fatal(out)
	}
	long, _ := json.Marshal(map[string]string{"reason": strings.Repeat("x", 5000)})
	if out, _ := redactBody(long); len(out) > 2100 {
		t.Fatalf("long body logged in full: %d", len(out))
	}
}

func FuzzDecodeStatus(f *testing.F) {
	for _, s := range []string{`{"status":"success"}`, `{"status":"processing","reason":""}`, `{"status":"SUCCEEDED"}`,
		`{"status":"declined","reason":"no funds"}`, `{"status":"weird"}`, `{"status":""}`, `{}`, `null`, `[]`,
		`{"status":"success","status":"declined"}`, `{"status":"\u0000"}`, `{"status":"canceled","reason":"` + strings.Repeat("я", 600) + `"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := decodeStatus(body)
		if err != nil {
			if st != (Status{}) {
				t.Fatalf("error with a status: %+v", st)
			}
			return
		}
		var r wire.StatusResponse
		if json.Unmarshal(body, &r) != nil {
			t.Fatal("decoded what encoding/json refuses")
		}
		// Success only from a word the wire file lists as success.
		if (st.State == StateSuccess) != (wire.StatusMeaning(r.Status) == wire.MeaningSuccess) {
			t.Fatalf("%q → %v", r.Status, st.State)
		}
		if utf8.RuneCountInString(st.Reason) > 501 || utf8.RuneCountInString(st.Raw) > 101 {
			t.Fatal("text not bounded")
		}
		for _, r := range st.Reason + st.Raw {
			if r < 0x20 {
				t.Fatalf("control character kept: %q", st.Reason+st.Raw)
			}
		}
	})
}

func FuzzErrorFromResponse(f *testing.F) {
	for _, s := range []string{`{"error":{"code":"code_expired","message":"m"}}`, `{"code":"x","message":"y"}`,
		`{"error":"text"}`, `{"detail":"d"}`, `{"error":{"code":1}}`, `{"code":1.5e300}`, `<html></html>`, ``, `null`, `{"error":null}`} {
		for _, st := range []int{400, 401, 404, 409, 422, 429, 500, 503, 302} {
			f.Add(st, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 || status/100 == 2 {
			return
		}
		e := errorFromResponse(OpRelease, status, body, []string{"SECRETCODE"})
		if e.Class < ClassAmbiguous || e.Class > ClassRejected {
			t.Fatalf("no class: %+v", e)
		}
		if status >= 500 && e.Class != ClassAmbiguous {
			t.Fatalf("%d not ambiguous", status)
		}
		if status == http.StatusUnauthorized && e.Class != ClassUnauthorized {
			t.Fatal("401 not unauthorized")
		}
		if utf8.RuneCountInString(e.Message) > 301 || utf8.RuneCountInString(e.Code) > 101 {
			t.Fatal("text not bounded")
		}
		if strings.Contains(e.Error(), "SECRETCODE") {
			t.Fatal("secret echoed")
		}
		_ = e.Error()
	})
}

func FuzzRedactBody(f *testing.F) {
	f.Add("https://qr.smartpay.example/c/abcdefghijklmnop", "kp-1")
	f.Add("SPAY:ЖЖЖЖЖЖ", "x")
	f.Add("\u2028\"\\", "")
	f.Fuzz(func(t *testing.T, code, kid string) {
		body, _ := json.Marshal(map[string]any{"code": code, "kassa_purchase_id": kid, "token": code})
		out, secrets := redactBody(body)
		if len(code) >= 12 && strings.ContainsAny(code, "ghijklmnopqrstuvwxyz:/-_") && !strings.Contains(kid, code) {
			enc, _ := json.Marshal(code)
			if strings.Contains(out, string(enc[1:len(enc)-1])) {
				t.Fatalf("code %q in log %s", code, out)
			}
		}
		if code != "" && len(secrets) != 2 {
			t.Fatalf("secrets %q", secrets)
		}
	})
}
