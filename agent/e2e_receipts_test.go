package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

type apiOp struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	State   string `json:"state"`
	Receipt *struct {
		Document struct {
			FD    uint32 `json:"fd"`
			FP    uint32 `json:"fp"`
			Total int64  `json:"total"`
		} `json:"document"`
		Change int64 `json:"change"`
	} `json:"receipt"`
	Error *struct{ Code, Message string } `json:"error"`
}

const cashReceipt = `{"receipt":{"items":[{"name":"Молоко 3,2%%","quantity":2000,"price":7990,"vat":"vat10"},{"name":"Хлеб","quantity":1000,"price":4500,"vat":"vat22"}]%s},"payments":%s}`

func posReceipt(extra, payments string) string { return fmt.Sprintf(cashReceipt, extra, payments) }

// TestPOSReceipts: receipts for money the POS took itself, through the local
// API: cash with change, a mix, a return; a retry with the same key (also
// reformatted) gets the same document and prints nothing.
func TestPOSReceipts(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	var op apiOp
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "cash-1", posReceipt("", `{"cash":30000}`), &op))
	assert.Equal(t, "done", op.State)
	require.NotNil(t, op.Receipt)
	assert.Equal(t, int64(9520), op.Receipt.Change, "change from 300.00 for 204.80")
	assert.Equal(t, int64(20480), op.Receipt.Document.Total)

	docs := receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 1)
	assert.Equal(t, op.Receipt.Document.FD, docs[0].FD)
	assert.Equal(t, op.Receipt.Document.FP, docs[0].FP)
	assert.Equal(t, int64(30000), docs[0].Payments[0], "cash")
	assert.Equal(t, int64(9520), docs[0].Change)

	// The same request again, reformatted: the same operation, nothing printed.
	var again apiOp
	body := "\n  " + posReceipt("", `{ "cash" : 30000 }`) + "\n"
	require.Equal(t, 200, r.call("POST", "/v1/receipts", "cash-1", body, &again))
	assert.Equal(t, op.ID, again.ID)
	assert.Equal(t, op.Receipt.Document.FD, again.Receipt.Document.FD)
	assert.Len(t, receiptsOf(r.till.Register.Documents()), 1, "printed twice")

	// A mix: card terminal and cash; then a return.
	var mix apiOp
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "mix-1", posReceipt("", `{"electronic":10000,"cash":10480}`), &mix))
	assert.Equal(t, "done", mix.State)
	assert.Zero(t, mix.Receipt.Change)
	var ret apiOp
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "ret-1", posReceipt(`,"type":"sale_return"`, `{"electronic":20480}`), &ret))
	docs = receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 3)
	assert.Equal(t, 2, docs[2].Operation, "a sale return")

	var got apiOp
	require.Equal(t, 200, r.call("GET", "/v1/receipts/"+ret.ID, "", "", &got))
	assert.Equal(t, ret.Receipt.Document.FD, got.Receipt.Document.FD)
	var list struct{ Receipts []apiOp }
	require.Equal(t, 200, r.call("GET", "/v1/receipts", "", "", &list))
	assert.Len(t, list.Receipts, 3)
}

// TestPOSReceiptBadInput: each rule broken once: 4xx naming the field,
// nothing stored, nothing sent to the register.
func TestPOSReceiptBadInput(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	cases := []struct{ name, body, field string }{
		{"paid less than the total", posReceipt("", `{"cash":100}`), "payments"},
		{"non-cash above the total", posReceipt("", `{"electronic":30000}`), "payments"},
		{"no payment", posReceipt("", `{}`), "payments"},
		{"negative", posReceipt("", `{"cash":-1}`), "payments.cash"},
		{"type", posReceipt(`,"type":"refund"`, `{"cash":30000}`), "receipt.type"},
		{"vat20 in 2026", `{"receipt":{"items":[{"name":"a","quantity":1000,"price":100,"vat":"vat20"}]},"payments":{"cash":100}}`, "vat22"},
		{"control character", `{"receipt":{"items":[{"name":"a\u001b[2J","quantity":1000,"price":100,"vat":"none"}]},"payments":{"cash":100}}`, "receipt.items[0].name"},
		{"unknown field", `{"receipt":{"items":[]},"payments":{"cash":100},"paid":1}`, "paid"},
	}
	for i, tc := range cases {
		var e apiError
		code := r.call("POST", "/v1/receipts", fmt.Sprint("bad-", i), tc.body, &e)
		assert.True(t, code == 400 || code == 422, "%s: HTTP %d", tc.name, code)
		assert.Contains(t, e.Error.Message, tc.field, tc.name)
	}
	var list struct{ Receipts []apiOp }
	r.call("GET", "/v1/receipts", "", "", &list)
	assert.Empty(t, list.Receipts)
	assert.Empty(t, receiptsOf(r.till.Register.Documents()))

	// Out of paper: refused before anything is stored.
	r.till.Register.SetPaper(false)
	var e apiError
	assert.Equal(t, 409, r.call("POST", "/v1/receipts", "paper", posReceipt("", `{"cash":30000}`), &e))
	assert.Equal(t, "register_paper_out", e.Error.Code)
}

// TestPOSReceiptLostReply: the register's reply to closing the receipt is
// lost; the agent learns the document from the FN: one receipt, its result
// known.
func TestPOSReceiptLostReply(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	r.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DropReply, Command: shtrih.CmdFNCloseReceipt})
	var op apiOp
	code := r.call("POST", "/v1/receipts", "lost-1", posReceipt("", `{"cash":30000}`), &op)
	require.Contains(t, []int{201, 202}, code)
	require.Eventually(t, func() bool {
		r.call("GET", "/v1/receipts/"+op.ID, "", "", &op)
		return op.State == "done"
	}, 15*time.Second, 20*time.Millisecond)
	docs := receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 1, "printed twice after a lost reply")
	assert.Equal(t, docs[0].FD, op.Receipt.Document.FD)
}

// TestRefunds: an Alif payment is refunded at the provider once and its
// refund slip prints once; the refund shows on the payment; a retry gets the
// same refund; a second refund of a refunded payment is refused; Smart Pay,
// which publishes no refund, answers refund_not_supported.
func TestRefunds(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	p := r.create("k", hostedProviders[0].body)
	p = r.waitState(p.ID, "processing", 10*time.Second)
	require.NoError(t, r.till.Alif.Pay(p.ProviderPaymentID))
	p = r.waitState(p.ID, "completed", 10*time.Second)

	var op apiOp
	require.Equal(t, 201, r.call("POST", "/v1/payments/"+p.ID+"/refunds", "refund-1", `{}`, &op))
	assert.Equal(t, "done", op.State, "error %+v", op.Error)
	var again apiOp
	require.Equal(t, 200, r.call("POST", "/v1/payments/"+p.ID+"/refunds", "refund-1", `{}`, &again))
	assert.Equal(t, op.ID, again.ID)
	s, ok := r.till.Alif.Session(p.ProviderPaymentID)
	require.True(t, ok)
	assert.Equal(t, 1, s.Refunds, "refunded at the provider exactly once")
	tape, err := os.ReadFile(r.till.TapePath())
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(tape), "REFUND alif"), "the refund slip printed once")

	var withRefund struct {
		Refunds []struct{ ID, State string }
	}
	require.Equal(t, 200, r.call("GET", "/v1/payments/"+p.ID, "", "", &withRefund))
	require.Len(t, withRefund.Refunds, 1)
	assert.Equal(t, "done", withRefund.Refunds[0].State)

	var e apiError
	assert.Equal(t, 409, r.call("POST", "/v1/payments/"+p.ID+"/refunds", "refund-2", `{}`, &e))

	sp := r.create("k2", saleBody(20480, milkReceipt))
	r.showCode()
	sp = r.waitState(sp.ID, "completed", 10*time.Second)
	e = apiError{}
	assert.Equal(t, 422, r.call("POST", "/v1/payments/"+sp.ID+"/refunds", "refund-3", `{}`, &e))
	assert.Equal(t, "refund_not_supported", e.Error.Code)
	assert.Contains(t, e.Error.Message, "/v1/receipts")
}
