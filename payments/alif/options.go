package alif

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"kassa-agent/payments"
	"kassa-agent/payments/alif/internal/wire"
)

// Options are the fields the POS may send under "alif" in POST
// /v1/payments. Empty fields take the config's defaults.
type Options struct {
	RedirectURL string          `json:"redirect_url"`
	CancelURL   string          `json:"cancel_url"`
	WebhookURL  string          `json:"webhook_url"`
	Meta        json.RawMessage `json:"meta"`
	EPOS        string          `json:"epos"`
}

// Limits of our own (Alif publishes none): they keep a typo or a runaway
// POS from sending kilobytes to a payment page.
const (
	MaxURLLen  = 2048
	MaxMetaLen = 4096 // bytes of the POS's meta
	MaxEPOSLen = 64
	MaxNameLen = 256 // characters of an item name
	MaxItems   = 1000
)

var optionFields = []string{"redirect_url", "cancel_url", "webhook_url", "meta", "epos"}

func fieldErr(field, format string, args ...any) *payments.FieldError {
	return &payments.FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

func optField(name string) string { return Name + "." + name }

// decodeOptions reads the POS's options strictly: an object whose keys are
// exactly our field names (no case variants, which encoding/json would
// otherwise accept), each once, and nothing after it. A set field is
// marked in set, so an explicit "" is not taken for "use the default".
func decodeOptions(raw json.RawMessage) (Options, map[string]bool, error) {
	var o Options
	set := map[string]bool{}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return o, set, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return o, nil, fieldErr(Name, "must be a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return o, nil, fieldErr(Name, "is not valid JSON")
		}
		key, _ := t.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return o, nil, fieldErr(optField(key), "is not valid JSON")
		}
		known := false
		for _, f := range optionFields {
			known = known || key == f
		}
		if !known {
			return o, nil, fieldErr(optField(key), "is not a field of %s (known: %s)", Name, strings.Join(optionFields, ", "))
		}
		if set[key] {
			return o, nil, fieldErr(optField(key), "appears twice")
		}
		set[key] = true
		if key == "meta" {
			o.Meta = val
			continue
		}
		var s string
		// null would decode as "" without an error; it is not a string.
		if err := json.Unmarshal(val, &s); err != nil || bytes.Equal(val, []byte("null")) {
			return o, nil, fieldErr(optField(key), "must be a string")
		}
		switch key {
		case "redirect_url":
			o.RedirectURL = s
		case "cancel_url":
			o.CancelURL = s
		case "webhook_url":
			o.WebhookURL = s
		case "epos":
			o.EPOS = s
		}
	}
	if _, err := dec.Token(); err != nil {
		return o, nil, fieldErr(Name, "is not valid JSON")
	}
	if len(bytes.TrimSpace(raw[dec.InputOffset():])) > 0 {
		return o, nil, fieldErr(Name, "has data after the object")
	}
	return o, set, nil
}

// checkHTTPS enforces the seed's rule "a valid URL starting with https://".
func checkHTTPS(s string) error {
	if len(s) > MaxURLLen {
		return fmt.Errorf("is longer than %d bytes", MaxURLLen)
	}
	if !strings.HasPrefix(s, "https://") {
		return errors.New("must be a URL starting with https://")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || !utf8.ValidRune(r) || r == utf8.RuneError {
			return errors.New("must not contain spaces or control characters")
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.Opaque != "" {
		return errors.New("is not a valid https URL")
	}
	if u.User != nil {
		return errors.New("must not carry a user name or password")
	}
	return nil
}

// buildCreate validates an order and makes the create request. Nothing is
// sent from here: every refusal is a *payments.FieldError.
func (c *Client) buildCreate(o payments.Order) (wire.CreateRequest, error) {
	var req wire.CreateRequest
	if o.ID == "" || len(o.ID) > 64 {
		return req, fieldErr("order_id", "must be 1–64 bytes")
	}
	opts, set, err := decodeOptions(o.Options)
	if err != nil {
		return req, err
	}
	pick := func(key, pos, def string) string {
		if set[key] {
			return pos
		}
		return def
	}
	req.RedirectURL = pick("redirect_url", opts.RedirectURL, c.defaults.RedirectURL)
	req.CancelURL = pick("cancel_url", opts.CancelURL, c.defaults.CancelURL)
	req.WebhookURL = pick("webhook_url", opts.WebhookURL, c.defaults.WebhookURL)
	req.EPOS = pick("epos", opts.EPOS, c.defaults.EPOS)
	for _, u := range []struct{ key, val string }{{"redirect_url", req.RedirectURL}, {"cancel_url", req.CancelURL}} {
		if err := checkHTTPS(u.val); err != nil {
			if !set[u.key] && u.val == "" {
				return req, fieldErr(optField(u.key), "is required (none configured either)")
			}
			return req, fieldErr(optField(u.key), "%v", err)
		}
	}
	if req.WebhookURL != "" {
		if err := checkHTTPS(req.WebhookURL); err != nil {
			return req, fieldErr(optField("webhook_url"), "%v", err)
		}
	}
	if err := checkEPOS(req.EPOS); err != nil {
		return req, fieldErr(optField("epos"), "%v", err)
	}
	if req.Meta, err = withOrderID(opts.Meta, o.ID); err != nil {
		return req, err
	}

	if o.Amount.Currency != payments.UZS {
		return req, fieldErr("currency", "Alif takes UZS only, not %q", o.Amount.Currency)
	}
	if o.Amount.Minor <= 0 {
		return req, fieldErr("amount", "must be a positive number of tiyin")
	}
	if len(o.Items) == 0 {
		return req, fieldErr("receipt.items", "Alif's checkout needs at least one item")
	}
	if len(o.Items) > MaxItems {
		return req, fieldErr("receipt.items", "more than %d items", MaxItems)
	}
	total := payments.Tiyin(0)
	for i, it := range o.Items {
		at := func(f string) string { return fmt.Sprintf("receipt.items[%d].%s", i, f) }
		name := strings.TrimSpace(it.Name)
		switch {
		case name == "":
			return req, fieldErr(at("name"), "must not be empty")
		case !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
			return req, fieldErr(at("name"), "must be UTF-8 text without control characters")
		case utf8.RuneCountInString(name) > MaxNameLen:
			return req, fieldErr(at("name"), "is longer than %d characters", MaxNameLen)
		case it.Quantity <= 0:
			return req, fieldErr(at("quantity"), "must be a positive number of thousandths (1000 = 1 piece)")
		case it.Price < 0:
			return req, fieldErr(at("price"), "must not be negative")
		}
		line, err := wireLine(it)
		if err != nil {
			return req, fieldErr(at("price"), "price × quantity is out of range")
		}
		line.Name = name
		sum, err := payments.Tiyin(line.Price).Mul(line.Amount)
		if err != nil {
			return req, fieldErr(at("price"), "price × quantity is out of range")
		}
		if total, err = total.Add(sum); err != nil {
			return req, fieldErr("amount", "the sum of the items is out of range")
		}
		req.Items = append(req.Items, line)
	}
	if total != o.Amount {
		return req, fieldErr("amount", "is %s but the items add up to %s (Σ price × quantity)", o.Amount, total)
	}
	return req, nil
}

// wireLine turns an item into Alif's {price, amount}: a whole quantity as
// is; a fractional one as one unit priced at the line's sum, rounded half
// up to a tiyin as the fiscal receipt rounds it (see wire.Item).
func wireLine(it payments.Item) (wire.Item, error) {
	if it.Quantity%1000 == 0 {
		return wire.Item{Price: it.Price, Amount: it.Quantity / 1000}, nil
	}
	p, err := payments.Tiyin(it.Price).Mul(it.Quantity)
	if err == nil {
		p, err = p.Add(payments.Tiyin(500))
	}
	if err != nil {
		return wire.Item{}, err
	}
	return wire.Item{Price: p.Minor / 1000, Amount: 1}, nil
}

func checkEPOS(s string) error {
	if s == "" {
		return errors.New("is required: the Alif terminal to charge through")
	}
	if len(s) > MaxEPOSLen {
		return fmt.Errorf("is longer than %d bytes", MaxEPOSLen)
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f {
			return errors.New("must be printable ASCII without spaces")
		}
	}
	return nil
}

// withOrderID returns the meta to send: the POS's meta with our order id
// added under wire.MetaOrderID. A POS meta that is not an object is kept
// under wire.MetaPOS, since the id needs an object to live in.
func withOrderID(posMeta json.RawMessage, orderID string) (json.RawMessage, error) {
	posMeta = bytes.TrimSpace(posMeta)
	if len(posMeta) > MaxMetaLen {
		return nil, fieldErr(optField("meta"), "is longer than %d bytes", MaxMetaLen)
	}
	m := map[string]json.RawMessage{}
	if len(posMeta) > 0 && !bytes.Equal(posMeta, []byte("null")) {
		if !json.Valid(posMeta) {
			return nil, fieldErr(optField("meta"), "is not valid JSON")
		}
		if posMeta[0] == '{' {
			if err := json.Unmarshal(posMeta, &m); err != nil {
				return nil, fieldErr(optField("meta"), "is not a valid JSON object")
			}
			if _, taken := m[wire.MetaOrderID]; taken {
				return nil, fieldErr(optField("meta"), "must not hold %q: the agent puts its order id there", wire.MetaOrderID)
			}
		} else {
			m[wire.MetaPOS] = posMeta
		}
	}
	id, _ := json.Marshal(orderID)
	m[wire.MetaOrderID] = id
	out, err := json.Marshal(m) // keys sorted: the same order gives the same body
	if err != nil {
		return nil, fieldErr(optField("meta"), "cannot be encoded: %v", err)
	}
	return out, nil
}
