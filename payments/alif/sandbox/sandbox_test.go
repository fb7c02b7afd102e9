package sandbox_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"kassa-agent/payments/alif"
	"kassa-agent/payments/alif/sandbox"
)

func post(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const createBody = `{"items":[{"name":"apple","price":3000,"amount":3}],"redirect_url":"https://s.example/ok",
	"cancel_url":"https://s.example/back","meta":{"a":1},"epos":"aliftech"}`

func TestAPIAndAdminAsTheDemoUsesThem(t *testing.T) {
	srv, err := sandbox.Start(sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// Without the token: 401, nothing made.
	if st, _ := post(t, srv.URL()+"/v2/invoice", "", createBody); st != http.StatusUnauthorized {
		t.Fatalf("no token: %d", st)
	}
	// A validation refusal is HTTP 200 + error naming the field.
	st, body := post(t, srv.URL()+"/v2/invoice", srv.Token(), strings.Replace(createBody, "https://s.example/back", "http://s.example/back", 1))
	if st != 200 || !strings.Contains(body, `"field":"cancel_url"`) {
		t.Fatalf("validation: %d %s", st, body)
	}
	st, body = post(t, srv.URL()+"/v2/invoice", srv.Token(), createBody)
	var created struct{ ID string }
	if json.Unmarshal([]byte(body), &created); st != 200 || created.ID == "" {
		t.Fatalf("create: %d %s", st, body)
	}
	st, body = post(t, srv.URL()+"/v2/getInvoice", srv.Token(), `{"id":"`+created.ID+`"}`)
	if st != 200 || !strings.Contains(body, `"amount":9000`) || !strings.Contains(body, `"payment":null`) {
		t.Fatalf("status: %d %s", st, body)
	}
	// Admin: fail, then pay, then pay again refused.
	if st, body := post(t, srv.URL()+"/sandbox/sessions/"+created.ID+"/fail", "", `{"word":"EXPIRED_CARD"}`); st != 200 || !strings.Contains(body, "EXPIRED_CARD") {
		t.Fatalf("fail: %d %s", st, body)
	}
	if st, _ := post(t, srv.URL()+"/sandbox/sessions/"+created.ID+"/pay", "", ``); st != 200 {
		t.Fatalf("pay: %d", st)
	}
	if st, _ := post(t, srv.URL()+"/sandbox/sessions/"+created.ID+"/pay", "", ``); st != http.StatusConflict {
		t.Fatalf("second pay: %d", st)
	}
	if st, body := post(t, srv.URL()+"/sandbox/faults", "", `{"op":"status","kind":"status_word","word":"ODD"}`); st != http.StatusCreated {
		t.Fatalf("inject: %d %s", st, body)
	}
	if st, body := post(t, srv.URL()+"/sandbox/faults", "", `{"op":"status","kind":"nope"}`); st != http.StatusBadRequest {
		t.Fatalf("bad fault: %d %s", st, body)
	}
	if st, body := post(t, srv.URL()+"/sandbox/faults", "", `{"op":"status","kind":"latency","dealy":"1s"}`); st != http.StatusBadRequest {
		t.Fatalf("typo accepted: %d %s", st, body)
	}
	if _, body := post(t, srv.URL()+"/v2/getInvoice", srv.Token(), `{"id":"`+created.ID+`"}`); !strings.Contains(body, `"ODD"`) {
		t.Fatalf("status word fault: %s", body)
	}
	resp, err := http.Get(srv.URL() + "/sandbox/requests")
	if err != nil {
		t.Fatal(err)
	}
	var journal []sandbox.Request
	json.NewDecoder(resp.Body).Decode(&journal)
	resp.Body.Close()
	if len(journal) != 5 || journal[0].TokenOK || !journal[2].TokenOK || journal[2].Op != alif.OpCreate {
		t.Fatalf("journal %+v", journal)
	}
}

func TestFixedAddressAndFiles(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	srv, err := sandbox.Start(sandbox.Options{Addr: addr, Dir: dir, Token: "demo-token", WebhookSecret: "demo-secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if srv.URL() != "http://"+addr {
		t.Fatalf("url %s", srv.URL())
	}
	if b, _ := os.ReadFile(srv.Files().TokenFile); strings.TrimSpace(string(b)) != "demo-token" {
		t.Fatalf("token file %q", b)
	}
	cl, err := alif.New(srv.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if _, err := sandbox.Start(sandbox.Options{Addr: "0.0.0.0:0"}); err == nil {
		t.Fatal("a non-loopback address accepted")
	}
}
