package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal/shtrihsim"
)

type apiRegOp struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	State    string `json:"state"`
	Document *struct {
		FD    uint32 `json:"fd"`
		FP    uint32 `json:"fp"`
		Shift int    `json:"shift"`
	} `json:"document"`
	Recovery *struct {
		Found []string `json:"found"`
	} `json:"recovery"`
	Receipt *struct {
		Document struct {
			FD uint32 `json:"fd"`
			QR string `json:"qr"`
		} `json:"document"`
	} `json:"receipt"`
	Error *struct{ Code, Message string } `json:"error"`
}

func docsOfType(docs []shtrihsim.Document, typ int) []shtrihsim.Document {
	var out []shtrihsim.Document
	for _, d := range docs {
		if d.Type == typ {
			out = append(out, d)
		}
	}
	return out
}

// TestRegisterOperations: a till's day through the local API, against the
// register simulator: open the shift as a cashier, cash in and out, an X
// report, a receipt with its QR string, the last document and a copy of it,
// a non-fiscal print with a QR code, a correction, the Z report, the
// register's info and a recovery. Each document-making call retried with its
// key makes nothing new. The same day over the register's serial line and
// over TCP (network models).
func TestRegisterOperations(t *testing.T) {
	for _, tr := range []struct {
		name string
		o    rigOptions
	}{{"serial", rigOptions{}}, {"tcp", rigOptions{tcpReg: true}}} {
		t.Run(tr.name, func(t *testing.T) { testRegisterOperations(t, tr.o) })
	}
}

func testRegisterOperations(t *testing.T, o rigOptions) {
	r := newRig(t, o)
	if o.tcpReg {
		require.Contains(t, r.cfg.Register.Transport, "tcp", "the rig did not put the register on TCP")
	}
	r.startInProcess()
	do := func(path, key, body string, want int) apiRegOp {
		t.Helper()
		var op apiRegOp
		code := r.call("POST", path, key, body, &op)
		require.Equal(t, want, code, "%s: %+v", path, op)
		return op
	}
	var shift struct {
		Open   bool `json:"open"`
		Number int  `json:"number"`
	}
	require.Equal(t, 200, r.call("GET", "/v1/shift", "", "", &shift))
	require.False(t, shift.Open, "the simulated register starts with its shift closed")

	open := do("/v1/shift/open", "open-1", `{"cashier":{"name":"Иванова И.","inn":"500100732259"}}`, 201)
	assert.Equal(t, "done", open.State)
	require.NotNil(t, open.Document)
	again := do("/v1/shift/open", "open-1", `{"cashier":{"name":"Иванова И.","inn":"500100732259"}}`, 200)
	assert.Equal(t, open.Document.FD, again.Document.FD)
	assert.Len(t, docsOfType(r.till.Register.Documents(), 2), 1, "one shift-open report")
	require.Equal(t, 200, r.call("GET", "/v1/shift", "", "", &shift))
	assert.True(t, shift.Open)

	assert.Equal(t, "done", do("/v1/cash/in", "in-1", `{"amount":100000}`, 201).State)
	assert.Equal(t, "done", do("/v1/cash/out", "out-1", `{"amount":5000}`, 201).State)
	assert.Equal(t, "done", do("/v1/cash/in", "in-1", `{"amount":100000}`, 200).State, "a retry")
	assert.Equal(t, "done", do("/v1/reports/x", "x-1", `{}`, 201).State)

	var rc apiRegOp
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "rc-1", posReceipt("", `{"cash":30000}`), &rc))
	require.NotNil(t, rc.Receipt)
	assert.Regexp(t, `^t=\d{8}T\d{4}&s=204\.80&fn=\d+&i=\d+&fp=\d+&n=1$`, rc.Receipt.Document.QR)

	var last struct {
		FD        uint32 `json:"fd"`
		Type      int    `json:"type"`
		Operation string `json:"operation"`
		Total     int64  `json:"total"`
	}
	require.Equal(t, 200, r.call("GET", "/v1/documents/last", "", "", &last))
	assert.Equal(t, rc.Receipt.Document.FD, last.FD)
	require.Equal(t, 200, r.call("GET", fmt.Sprintf("/v1/documents/%d", last.FD), "", "", &last))
	assert.Equal(t, 3, last.Type)
	assert.Equal(t, "sale", last.Operation)
	assert.Equal(t, int64(20480), last.Total)
	assert.Equal(t, "done", do(fmt.Sprintf("/v1/documents/%d/copy", last.FD), "copy-1", `{}`, 201).State)
	// An earlier document is read back from the FN archive and printed as text.
	before, err := os.ReadFile(r.till.TapePath())
	require.NoError(t, err)
	assert.Equal(t, "done", do(fmt.Sprintf("/v1/documents/%d/copy", open.Document.FD), "copy-2", `{}`, 201).State)
	after, err := os.ReadFile(r.till.TapePath())
	require.NoError(t, err)
	copied := string(after[len(before):])
	assert.Contains(t, copied, "КОПИЯ ДОКУМЕНТА ИЗ ФН")
	assert.Contains(t, copied, "ОТЧЕТ ОБ ОТКРЫТИИ СМЕНЫ")
	assert.Contains(t, copied, fmt.Sprintf("ФД %d", open.Document.FD))
	var e apiError
	assert.Equal(t, 422, r.call("POST", fmt.Sprintf("/v1/documents/%d/copy", last.FD+100), "copy-3", `{}`, &e), "no such document")
	assert.Contains(t, e.Error.Message, "no document")

	assert.Equal(t, "done", do("/v1/print", "print-1", `{"lines":["Оплата по ссылке:"],"qr":"https://checkout.example/p/123"}`, 201).State)
	tape, err := os.ReadFile(r.till.TapePath())
	require.NoError(t, err)
	assert.Contains(t, string(tape), "https://checkout.example/p/123")

	corr := do("/v1/corrections", "corr-1", `{"type":"self","base_date":"2026-11-30",
		"receipt":{"items":[{"name":"Хлеб","quantity":1000,"price":4500,"vat":"vat10"},
			{"name":"Кофе","quantity":1000,"price":10000,"vat":"vat22"},{"name":"Чай","quantity":1000,"price":10000,"vat":"vat5"}]},
		"payments":{"cash":24500}}`, 201)
	assert.Equal(t, "done", corr.State, "%+v", corr.Error)
	corrs := docsOfType(r.till.Register.Documents(), 31)
	if assert.Len(t, corrs, 1, "one correction receipt") && assert.Len(t, corrs[0].Items, 3) {
		assert.Equal(t, []string{"НДС 10%", "НДС 22%", "НДС 5%"}, []string{corrs[0].Items[0].RateName, corrs[0].Items[1].RateName, corrs[0].Items[2].RateName})
		assert.Equal(t, int64(1803), corrs[0].Items[1].Tax, "22 % of 100.00 included")
		assert.Equal(t, corr.Document.FD, corrs[0].FD)
	}

	z := do("/v1/shift/close", "z-1", `{"cashier":{"name":"Иванова И."}}`, 201)
	assert.Equal(t, "done", z.State)
	assert.Len(t, docsOfType(r.till.Register.Documents(), 5), 1, "one Z report")

	var info struct {
		RegNumber  string   `json:"reg_number"`
		FNNumber   string   `json:"fn_number"`
		FNDaysLeft int      `json:"fn_days_left"`
		TaxSystems []string `json:"tax_systems"`
		Shift      struct {
			Open bool `json:"open"`
		} `json:"shift"`
	}
	require.Equal(t, 200, r.call("GET", "/v1/register", "", "", &info))
	assert.NotEmpty(t, info.RegNumber)
	assert.NotEmpty(t, info.FNNumber)
	assert.Positive(t, info.FNDaysLeft)
	assert.False(t, info.Shift.Open)

	rec := do("/v1/register/recover", "rec-1", `{}`, 201)
	assert.Equal(t, "done", rec.State)
	require.NotNil(t, rec.Recovery)
	assert.NotEmpty(t, rec.Recovery.Found)
}

// TestRegisterOperationsBadInput: refused before anything is stored or sent,
// naming the field.
func TestRegisterOperationsBadInput(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	before := len(r.till.Register.Documents())
	cases := []struct{ path, body, field string }{
		{"/v1/cash/in", `{"amount":0}`, "amount"},
		{"/v1/cash/out", `{"amount":-5}`, "amount"},
		{"/v1/shift/open", `{"cashier":{"name":"A","inn":"123"}}`, "cashier"},
		{"/v1/print", `{"lines":["a\u001b[2J"]}`, "lines[0]"},
		{"/v1/print", `{}`, "lines"},
		{"/v1/corrections", `{"type":"later","base_date":"2026-11-30","receipt":{"items":[]},"payments":{"cash":1}}`, "type"},
		{"/v1/corrections", `{"type":"by_order","base_date":"2026-11-30","receipt":{"items":[{"name":"a","quantity":1000,"price":100,"vat":"vat10"}]},"payments":{"cash":100}}`, "base_number"},
		{"/v1/corrections", `{"type":"self","base_date":"30.11.2026","receipt":{"items":[]},"payments":{"cash":1}}`, "base_date"},
	}
	for i, tc := range cases {
		var e apiError
		code := r.call("POST", tc.path, fmt.Sprint("bad-", i), tc.body, &e)
		assert.True(t, code == 400 || code == 422, "%s %s: HTTP %d", tc.path, tc.body, code)
		assert.True(t, strings.Contains(e.Error.Message, tc.field), "%s: %q does not name %s", tc.path, e.Error.Message, tc.field)
	}
	assert.Len(t, r.till.Register.Documents(), before, "a refused operation reached the register")
}
