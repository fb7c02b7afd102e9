package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// Marking codes as scanned, GS (0x1D) kept: a piece of milk and a weighed
// cheese (its code carries the weight, AI 3103).
const (
	codeMilk   = "0104650118041019215'WCKI\x1d93Zdh1"
	codeCheese = "0104607114051523215ABcdEF\x1d93dGVz\x1d3103000512"
	codeWater  = "0104600439931256215Water1\x1d93Aq9z"
	codeBeer   = "0104600682012345215Beer77\x1d93Hop1"
)

type markingCheck struct {
	Code          string `json:"code"`
	PlannedStatus string `json:"planned_status"`
	Verdict       string `json:"verdict"`
	Message       string `json:"message"`
	Accepted      bool   `json:"accepted"`
	Online        bool   `json:"online"`
	Local         int    `json:"local"`
	Result        int    `json:"result"`
	ItemStatus    int    `json:"item_status"`
	CodeType      int    `json:"code_type"`
}

// jsonBody marshals v: a code's GS goes as "\u001d", as a POS sends it.
func jsonBody(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

type mItem = map[string]any

// markedPOSReceipt is a cash receipt of the given lines.
func markedPOSReceipt(t *testing.T, typ string, items ...mItem) string {
	var total int64
	for _, it := range items {
		q, _ := it["quantity"].(int)
		total += (int64(it["price"].(int))*int64(q) + 500) / 1000
	}
	rec := map[string]any{"items": items}
	if typ != "" {
		rec["type"] = typ
	}
	return jsonBody(t, map[string]any{"receipt": rec, "payments": map[string]any{"cash": total}})
}

func milkLine(code string) mItem {
	return mItem{"name": "Молоко", "quantity": 1000, "price": 9900, "vat": "vat10", "marking_code": code}
}

func cheeseLine(code string) mItem {
	return mItem{"name": "Сыр весовой", "quantity": 512, "measure": "kg", "price": 120000, "vat": "vat10", "marking_code": code}
}

func (r *rig) checkCode(t *testing.T, body map[string]any) markingCheck {
	t.Helper()
	var c markingCheck
	require.Equal(t, 200, r.call("POST", "/v1/marking/check", "", jsonBody(t, body), &c), "%+v", c)
	return c
}

// accepts counts the codes the agent accepted in the FN (its log says each).
func (r *rig) accepts() int { return strings.Count(r.logs.String(), "marking code accepted in the FN") }

// TestMarkingPOSReceipt: two marked lines, one weighed (0.512 kg). Checked
// first through POST /v1/marking/check, the receipt prints with the codes as
// accepted (nothing checked again); the same receipt with new codes and no
// prior check is checked on the way. The FN journal holds each code byte for
// byte on its line, with 2106, 2003 and 2108.
func TestMarkingPOSReceipt(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()

	milk := r.checkCode(t, map[string]any{"code": codeMilk})
	assert.Equal(t, markingCheck{Code: codeMilk, PlannedStatus: "piece_sold", Verdict: "valid", Message: "Код маркировки проверен: можно продавать",
		Accepted: true, Online: true, Local: 3, Result: 0x0F, ItemStatus: 1, CodeType: 2}, milk)
	cheese := r.checkCode(t, map[string]any{"code": codeCheese, "quantity": 512, "measure": "kg"})
	assert.True(t, cheese.Accepted)
	assert.Equal(t, "measured_sold", cheese.PlannedStatus)
	require.Equal(t, 2, r.accepts())

	plain := mItem{"name": "Пакет", "quantity": 1000, "price": 500, "vat": "vat22"}
	var op apiOp
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "m-1", markedPOSReceipt(t, "", milkLine(codeMilk), cheeseLine(codeCheese), plain), &op))
	require.Equal(t, "done", op.State, "%+v", op.Error)
	assert.Equal(t, 2, r.accepts(), "the codes accepted by the checks were checked again")

	check := func(doc shtrihsim.Document, milk, cheese string) {
		t.Helper()
		require.Len(t, doc.Items, 3)
		m, c, p := doc.Items[0], doc.Items[1], doc.Items[2]
		assert.Equal(t, milk, m.Marking, "milk's code, byte for byte")
		assert.Equal(t, 0x0F, m.MarkingCheck, "milk's 2106")
		assert.Equal(t, 1, m.PlannedStatus)
		assert.Equal(t, int64(1_000_000), m.Quantity)
		assert.Equal(t, cheese, c.Marking, "cheese's code, byte for byte")
		assert.Equal(t, 0x0F, c.MarkingCheck, "cheese's 2106")
		assert.Equal(t, 2, c.PlannedStatus, "measured_sold")
		assert.Equal(t, 11, c.Measure, "kg")
		assert.Equal(t, int64(512_000), c.Quantity)
		assert.Empty(t, p.Marking)
		assert.Zero(t, p.MarkingCheck)
	}
	docs := receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 1)
	check(docs[0], codeMilk, codeCheese)

	// No prior check: the receipt's codes are checked on the way.
	milk2, cheese2 := codeMilk+"2", codeCheese+"7"
	op = apiOp{}
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "m-2", markedPOSReceipt(t, "", milkLine(milk2), cheeseLine(cheese2), plain), &op))
	require.Equal(t, "done", op.State, "%+v", op.Error)
	assert.Equal(t, 4, r.accepts())
	docs = receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 2)
	check(docs[1], milk2, cheese2)
}

// TestMarkingInvalidRefused: a code the FN refuses is "invalid" with the
// cashier's message and not accepted; a receipt with it is 422
// marking_refused naming the line, and nothing reaches the paper or the FN.
func TestMarkingInvalidRefused(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	r.till.Register.SetMarkingVerdict(codeWater, shtrihsim.MarkInvalid)

	c := r.checkCode(t, map[string]any{"code": codeWater})
	assert.Equal(t, "invalid", c.Verdict)
	assert.False(t, c.Accepted)
	assert.Contains(t, c.Message, "продажа запрещена")

	tape, fds := r.till.Register.Tape(), len(r.till.Register.Documents())
	var e apiError
	body := markedPOSReceipt(t, "", milkLine(codeMilk), milkLine(codeWater))
	require.Equal(t, 422, r.call("POST", "/v1/receipts", "inv-1", body, &e))
	assert.Equal(t, "marking_refused", e.Error.Code)
	assert.Contains(t, e.Error.Message, "receipt.items[1].marking_code")
	assert.Contains(t, e.Error.Message, "продажа запрещена")
	assert.Equal(t, tape, r.till.Register.Tape(), "the tape changed")
	assert.Len(t, r.till.Register.Documents(), fds, "the FN changed")
	var list struct{ Receipts []apiOp }
	r.call("GET", "/v1/receipts", "", "", &list)
	assert.Empty(t, list.Receipts, "a refused receipt was stored")
}

// TestMarkingUnreachablePolicy: Честный ЗНАК does not answer. Under the
// default policy the code is sold and its 2106 says it was not checked
// online; a group set to refuse refuses it.
func TestMarkingUnreachablePolicy(t *testing.T) {
	r := newRig(t, rigOptions{extra: "[marking]\nunchecked = \"sell\"\n[marking.groups.beer]\nunchecked = \"refuse\"\n"})
	r.startInProcess()
	r.till.Register.SetMarkingVerdict(codeWater, shtrihsim.MarkUnreachable)
	r.till.Register.SetMarkingVerdict(codeBeer, shtrihsim.MarkUnreachable)

	c := r.checkCode(t, map[string]any{"code": codeBeer, "group": "beer"})
	assert.Equal(t, "not_checked", c.Verdict)
	assert.False(t, c.Accepted, "the beer group refuses unchecked codes")
	assert.Contains(t, c.Message, "marking.unchecked")

	var op apiOp
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "w-1", markedPOSReceipt(t, "", milkLine(codeWater)), &op))
	require.Equal(t, "done", op.State, "%+v", op.Error)
	docs := receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 1)
	assert.Equal(t, codeWater, docs[0].Items[0].Marking)
	assert.Equal(t, 0x03, docs[0].Items[0].MarkingCheck, "2106: checked by the FN only, not online")

	beer := milkLine(codeBeer)
	beer["marking_group"] = "beer"
	var e apiError
	require.Equal(t, 422, r.call("POST", "/v1/receipts", "b-1", markedPOSReceipt(t, "", beer), &e))
	assert.Equal(t, "marking_refused", e.Error.Code)
	assert.Contains(t, e.Error.Message, "receipt.items[0].marking_code")
	assert.Len(t, receiptsOf(r.till.Register.Documents()), 1, "the refused receipt printed")
}

// TestMarkingScannedGS: a code read by the serial scanner keeps its GS
// bytes through the scan event, the POS's JSON and the receipt: the FN binds
// exactly the bytes scanned.
func TestMarkingScannedGS(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	events := r.subscribe()
	scanned := "\x1d0104603934000793215abc/=Kt\x1d93d0bY"
	require.NoError(t, r.till.ScannerWrite([]byte(scanned+"\r")))
	var text string
	require.Eventually(t, func() bool {
		for _, s := range events.scans() {
			text = s.Text
		}
		return text != ""
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, scanned, text, "the scan event changed the code")

	var op apiOp
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "gs-1", markedPOSReceipt(t, "", milkLine(text)), &op))
	require.Equal(t, "done", op.State, "%+v", op.Error)
	docs := receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 1)
	assert.Equal(t, []byte(scanned), []byte(docs[0].Items[0].Marking))
}

// TestMarkingLostReplies: the replies to a check (FF61h) and to an accept
// (FF69h) are lost on the wire; the receipt still prints once with every
// line bound to its code.
func TestMarkingLostReplies(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.runTuned(fastTimings)
	// A first marked receipt leaves the FN clear and known to the agent.
	var op apiOp
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "l-0", markedPOSReceipt(t, "", milkLine(codeBeer)), &op))
	require.Equal(t, "done", op.State, "%+v", op.Error)

	r.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DropReply, Command: shtrih.CmdFNCheckMarking})
	// The next FF69h is the decline of the check held after the lost reply;
	// the one after it is the accept.
	r.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DropReply, Command: shtrih.CmdFNAcceptMarking, After: 1})
	op = apiOp{}
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "l-1", markedPOSReceipt(t, "", milkLine(codeMilk), cheeseLine(codeCheese)), &op))
	require.Equal(t, "done", op.State, "%+v", op.Error)
	fired := r.till.Register.Fired()
	assert.Contains(t, fired, fmt.Sprintf("drop_reply@%X", shtrih.CmdFNCheckMarking))
	assert.Contains(t, fired, fmt.Sprintf("drop_reply@%X", shtrih.CmdFNAcceptMarking))
	docs := receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 2, "one receipt each")
	require.Len(t, docs[1].Items, 2)
	assert.Equal(t, codeMilk, docs[1].Items[0].Marking)
	assert.Equal(t, codeCheese, docs[1].Items[1].Marking)
	assert.Equal(t, 0x0F, docs[1].Items[0].MarkingCheck)
	assert.Equal(t, 0x0F, docs[1].Items[1].MarkingCheck)
}

// TestMarkingSaleReturn: a return of a marked item is checked for the
// returned status; the FN's line carries the code with 2003 = 3.
func TestMarkingSaleReturn(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	c := r.checkCode(t, map[string]any{"code": codeMilk, "type": "sale_return"})
	assert.Equal(t, "piece_returned", c.PlannedStatus)
	assert.True(t, c.Accepted)
	var op apiOp
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "ret-1", markedPOSReceipt(t, "sale_return", milkLine(codeMilk)), &op))
	require.Equal(t, "done", op.State, "%+v", op.Error)
	docs := receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 1)
	assert.Equal(t, 2, docs[0].Operation, "a sale return")
	assert.Equal(t, codeMilk, docs[0].Items[0].Marking)
	assert.Equal(t, 3, docs[0].Items[0].PlannedStatus, "piece_returned")
}

// TestMarkingPayment: a Smart Pay payment whose receipt has an invalid code
// is refused before anything reaches Smart Pay; one with a valid code is
// checked at creation and its receipt, printed after the money is taken,
// binds the code.
func TestMarkingPayment(t *testing.T) {
	r := newRig(t, rigOptions{processing: 50 * time.Millisecond})
	r.startInProcess()
	r.till.Register.SetMarkingVerdict(codeWater, shtrihsim.MarkInvalid)
	asked := func() (n int) {
		for _, q := range r.till.Sandbox.Requests() {
			if q.Path != "/v1/auth" {
				n++
			}
		}
		return n
	}
	before := asked()
	var e apiError
	bad := saleBody(9900, jsonBody(t, map[string]any{"items": []mItem{milkLine(codeWater)}}))
	require.Equal(t, 422, r.call("POST", "/v1/payments", "p-bad", bad, &e))
	assert.Equal(t, "marking_refused", e.Error.Code)
	assert.Contains(t, e.Error.Message, "receipt.items[0].marking_code")
	assert.Equal(t, before, asked(), "Smart Pay was asked about a refused payment")
	var list struct{ Payments []apiPayment }
	r.call("GET", "/v1/payments", "", "", &list)
	assert.Empty(t, list.Payments)

	n := r.accepts()
	p := r.create("p-ok", saleBody(9900, jsonBody(t, map[string]any{"items": []mItem{milkLine(codeMilk)}})))
	assert.Equal(t, n+1, r.accepts(), "the code was not checked at creation")
	r.showCode()
	p = r.waitState(p.ID, "completed", 10*time.Second)
	assert.Equal(t, "printed", p.Fiscal.State)
	assert.Equal(t, n+1, r.accepts(), "the code accepted at creation was checked again")
	docs := receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 1)
	assert.Equal(t, codeMilk, docs[0].Items[0].Marking)
	assert.Equal(t, 0x0F, docs[0].Items[0].MarkingCheck)
}

// TestMarkingBadInput: each rule broken once, for the check and for a
// receipt's new fields: 422 (or 400) naming the field, nothing sent to the
// register.
func TestMarkingBadInput(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	checks := []struct{ name, body, field string }{
		{"empty code", `{"code":""}`, "code"},
		{"control character", `{"code":"0104650118041019215\u001b[2J"}`, "code"},
		{"measure", `{"code":"010465011804101921x","measure":"pound","quantity":500}`, "measure"},
		{"weighed without quantity", `{"code":"010465011804101921x","measure":"kg"}`, "quantity"},
		{"two pieces", `{"code":"010465011804101921x","quantity":2000}`, "quantity"},
		{"negative", `{"code":"010465011804101921x","quantity":-1}`, "quantity"},
		{"fraction", `{"code":"010465011804101921x","fraction":{"numerator":3,"denominator":2}}`, "fraction"},
		{"type", `{"code":"010465011804101921x","type":"purchase"}`, "type"},
		{"unknown field", `{"code":"010465011804101921x","gtin":"1"}`, "gtin"},
	}
	checked := strings.Count(r.logs.String(), "marking code checked")
	for _, tc := range checks {
		var e apiError
		code := r.call("POST", "/v1/marking/check", "", tc.body, &e)
		assert.True(t, code == 400 || code == 422, "%s: HTTP %d", tc.name, code)
		assert.Contains(t, e.Error.Message, tc.field, tc.name)
	}
	item := func(extra string) string {
		return `{"receipt":{"items":[{"name":"Молоко","quantity":1000,"price":9900,"vat":"vat10","marking_code":"010465011804101921x"` + extra + `}]},"payments":{"cash":9900}}`
	}
	receipts := []struct{ name, body, field string }{
		{"measure", item(`,"measure":"pound"`), "receipt.items[0].measure"},
		{"two pieces of one code", `{"receipt":{"items":[{"name":"Молоко","quantity":2000,"price":9900,"vat":"vat10","marking_code":"010465011804101921x"}]},"payments":{"cash":19800}}`, "receipt.items[0].quantity"},
		{"fraction", item(`,"fraction":{"numerator":0,"denominator":2}`), "receipt.items[0].fraction"},
		{"fraction and quantity", `{"receipt":{"items":[{"name":"Таблетки","quantity":1000,"price":9900,"vat":"vat10","marking_code":"010465011804101921x","fraction":{"numerator":1,"denominator":3}}]},"payments":{"cash":9900}}`, "receipt.items[0].quantity"},
		{"industry date", item(`,"industry":[{"foiv":"030","date":"21.11.2023","number":"1944","value":"x"}]`), "receipt.items[0].industry[0].date"},
		{"industry foiv", item(`,"industry":[{"foiv":"30","date":"2023-11-21","number":"1944","value":"x"}]`), "receipt.items[0].industry[0].foiv"},
		{"group without code", `{"receipt":{"items":[{"name":"Хлеб","quantity":1000,"price":4500,"vat":"vat10","marking_group":"beer"}]},"payments":{"cash":4500}}`, "receipt.items[0].marking_code"},
		{"one code twice", `{"receipt":{"items":[{"name":"a","quantity":1000,"price":1,"vat":"none","marking_code":"010465011804101921x"},{"name":"b","quantity":1000,"price":1,"vat":"none","marking_code":"010465011804101921x"}]},"payments":{"cash":2}}`, "receipt.items[1].marking_code"},
		{"marked purchase", `{"receipt":{"type":"purchase","items":[{"name":"a","quantity":1000,"price":1,"vat":"none","marking_code":"010465011804101921x"}]},"payments":{"cash":1}}`, "items[0].marking_code"},
	}
	for i, tc := range receipts {
		var e apiError
		code := r.call("POST", "/v1/receipts", fmt.Sprint("mbad-", i), tc.body, &e)
		assert.True(t, code == 400 || code == 422, "%s: HTTP %d", tc.name, code)
		assert.Contains(t, e.Error.Message, tc.field, tc.name)
	}
	assert.Equal(t, checked, strings.Count(r.logs.String(), "marking code checked"), "bad input reached the register")
	var list struct{ Receipts []apiOp }
	r.call("GET", "/v1/receipts", "", "", &list)
	assert.Empty(t, list.Receipts)
}

// TestMarkingFFD105: a register registered for FFD 1.05 checks no codes:
// the check is refused with marking_unsupported naming register.ffd, and a
// receipt's code goes on its line (tag 1162) unchecked.
func TestMarkingFFD105(t *testing.T) {
	r := newRig(t, rigOptions{ffd: "1.05"})
	r.startInProcess()
	var e apiError
	require.Equal(t, 409, r.call("POST", "/v1/marking/check", "", `{"code":"010465011804101921x"}`, &e))
	assert.Equal(t, "marking_unsupported", e.Error.Code)
	assert.Contains(t, e.Error.Message, "register.ffd")

	var op apiOp
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "old-1", markedPOSReceipt(t, "", milkLine(codeMilk)), &op))
	require.Equal(t, "done", op.State, "%+v", op.Error)
	docs := receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 1)
	assert.Equal(t, codeMilk, docs[0].Items[0].Marking, "tag 1162")
	assert.Zero(t, docs[0].Items[0].MarkingCheck, "checked on an FFD 1.05 register")
	assert.NotContains(t, r.logs.String(), "marking code checked")
}

// TestMarkingCancelledReceiptRechecks: the register fails the second line
// of a marked receipt; the receipt is cancelled and the FN drops the code
// bound to it. The next attempt is refused by the register ("check the codes
// again"), the agent checks them again, and the receipt prints once with both
// lines bound.
func TestMarkingCancelledReceiptRechecks(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	r.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DeviceError, Command: shtrih.CmdFNOperation, Code: shtrih.FNErrFailure, After: 1})
	var op apiOp
	code := r.call("POST", "/v1/receipts?wait=10s", "c-1", markedPOSReceipt(t, "", milkLine(codeMilk), cheeseLine(codeCheese)), &op)
	require.Equal(t, 201, code, "%+v", op)
	require.Equal(t, "done", op.State, "%+v", op.Error)
	assert.Contains(t, r.till.Register.Fired(), fmt.Sprintf("device_error@%X", shtrih.CmdFNOperation))
	assert.Contains(t, r.logs.String(), "the FN no longer holds the receipt's marking codes")
	docs := receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 1)
	require.Len(t, docs[0].Items, 2)
	assert.Equal(t, codeMilk, docs[0].Items[0].Marking)
	assert.Equal(t, codeCheese, docs[0].Items[1].Marking)
}

// TestMarkingPaymentRefusedAfterMoney: the code was accepted when the
// payment was made, the money is taken, then the first print fails and the
// FN drops the code; checked again it is now invalid. The receipt is not
// printed and not dropped: the payment stays paid with the receipt owed and
// marking_refused shown.
func TestMarkingPaymentRefusedAfterMoney(t *testing.T) {
	r := newRig(t, rigOptions{processing: 50 * time.Millisecond})
	r.startInProcess()
	p := r.create("p-late", saleBody(9900, jsonBody(t, map[string]any{"items": []mItem{milkLine(codeMilk)}})))
	r.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DeviceError, Command: shtrih.CmdFNOperation, Code: shtrih.FNErrFailure})
	r.till.Register.SetMarkingVerdict(codeMilk, shtrihsim.MarkInvalid)
	r.showCode()
	var got apiPayment
	require.Eventually(t, func() bool {
		got = apiPayment{}
		r.call("GET", "/v1/payments/"+p.ID, "", "", &got)
		return got.Fiscal.Error != nil && got.Fiscal.Error.Code == "marking_refused"
	}, 10*time.Second, 20*time.Millisecond, "%+v", got)
	assert.Equal(t, "paid", got.State)
	assert.Equal(t, "pending", got.Fiscal.State, "the owed receipt was dropped")
	assert.Contains(t, got.Fiscal.Error.Message, "receipt.items[0].marking_code")
	assert.Empty(t, receiptsOf(r.till.Register.Documents()))
}

// TestMarkingFractionAndIndustry: a third of a marked pack sells as 1291
// (1/3, quantity 0.333333) after its check, and the receipt without its own
// 1260 carries marking.industry's requisite; a line's own 1260 wins.
func TestMarkingFractionAndIndustry(t *testing.T) {
	r := newRig(t, rigOptions{extra: "[marking]\nindustry = [{ foiv = \"030\", date = \"2023-11-21\", number = \"1944\", value = \"UUID=abc&Time=1700000000\" }]\n"})
	r.startInProcess()
	pills := mItem{"name": "Таблетки", "price": 30000, "vat": "vat10", "marking_code": codeWater, "fraction": map[string]any{"numerator": 1, "denominator": 3}}
	own := milkLine(codeMilk)
	own["industry"] = []map[string]any{{"foiv": "012", "date": "2024-01-02", "number": "7", "value": "own"}}
	body := jsonBody(t, map[string]any{"receipt": map[string]any{"items": []mItem{pills, own}}, "payments": map[string]any{"cash": 20000}})
	var op apiOp
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "f-1", body, &op))
	require.Equal(t, "done", op.State, "%+v", op.Error)
	docs := receiptsOf(r.till.Register.Documents())
	require.Len(t, docs, 1)
	p, m := docs[0].Items[0], docs[0].Items[1]
	assert.Equal(t, codeWater, p.Marking)
	assert.Equal(t, int64(333_333), p.Quantity)
	assert.Equal(t, [2]int64{1, 3}, [2]int64{p.FractionNum, p.FractionDen})
	assert.Equal(t, 2, p.PlannedStatus, "measured_sold")
	require.Len(t, p.Industry, 1)
	assert.Equal(t, "030", p.Industry[0].FOIV)
	assert.Equal(t, "UUID=abc&Time=1700000000", p.Industry[0].Value)
	require.Len(t, m.Industry, 1)
	assert.Equal(t, "012", m.Industry[0].FOIV)
	assert.Equal(t, int64(10000+9900), docs[0].Total)
}

// fnSaved is how many accepted codes the simulated FN holds, read from its
// state file.
func (r *rig) fnSaved(t *testing.T) int {
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(r.till.TapePath()), "register-fn.json"))
	require.NoError(t, err)
	var st struct {
		MarkSaved []json.RawMessage `json:"mark_saved"`
	}
	require.NoError(t, json.Unmarshal(raw, &st))
	return len(st.MarkSaved)
}

// TestMarkingCheckTwice: the cashier scans one code twice; the FN holds it
// once (the agent clears before accepting it again), and after the receipt
// it holds nothing.
func TestMarkingCheckTwice(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	require.True(t, r.checkCode(t, map[string]any{"code": codeMilk}).Accepted)
	require.True(t, r.checkCode(t, map[string]any{"code": codeMilk}).Accepted)
	assert.Equal(t, 1, r.fnSaved(t), "the FN holds the code twice")
	var op apiOp
	require.Equal(t, 201, r.call("POST", "/v1/receipts", "t-1", markedPOSReceipt(t, "", milkLine(codeMilk)), &op))
	require.Equal(t, "done", op.State, "%+v", op.Error)
	assert.Equal(t, 2, r.accepts(), "the receipt checked the code a third time")
	assert.Zero(t, r.fnSaved(t), "accepted codes left in the FN")
}
