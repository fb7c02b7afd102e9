package alikassa

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"kassa-agent/payments"
	"kassa-agent/payments/alikassa/internal/wire"
)

// Options are the fields the POS may send under "alikassa" in
// POST /v1/payments. Every one is optional; the config supplies defaults.
// Unknown fields are refused.
type Options struct {
	CustomerIP   string `json:"customer_ip,omitempty"`
	CustomerCode string `json:"customer_code,omitempty"`
	Service      string `json:"service,omitempty"`
	// Lifetime of the payment page in seconds, 900–3600.
	Lifetime int64 `json:"lifetime,omitempty"`

	SuccessRedirectID      int64  `json:"success_redirect_id,omitempty"`
	FailRedirectID         int64  `json:"fail_redirect_id,omitempty"`
	NotificationEndpointID int64  `json:"notification_endpoint_id,omitempty"`
	SuccessRedirectURL     string `json:"success_redirect_url,omitempty"`
	FailRedirectURL        string `json:"fail_redirect_url,omitempty"`
	NotificationEndpoint   string `json:"notification_endpoint_url,omitempty"`
}

// field names a POS field as the POS sent it: "alikassa.<name>".
func field(name string) string { return "alikassa." + name }

func fieldErr(name, msg string) *payments.FieldError {
	return &payments.FieldError{Field: field(name), Message: msg}
}

// decodeOptions reads the POS's options strictly; empty means none.
func decodeOptions(raw json.RawMessage) (Options, error) {
	var o Options
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return o, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&o); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return o, fieldErr(ute.Field, "wrong type: want "+ute.Type.String())
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return o, fieldErr(strings.Trim(name, `"`), "unknown field")
		}
		return o, &payments.FieldError{Field: "alikassa", Message: "not a valid options object: " + err.Error()}
	}
	if d.More() {
		return o, &payments.FieldError{Field: "alikassa", Message: "trailing data after the options object"}
	}
	return o, nil
}

// request is one create, checked and ready to encode.
type request struct {
	fields []wire.Field
}

// build checks an order against the seed's rules and the config and gives
// the create fields in sending order. Every refusal is a FieldError.
func (c *Client) build(o payments.Order) (request, error) {
	opts, err := decodeOptions(o.Options)
	if err != nil {
		return request{}, err
	}
	// Our own id is the order_id: it must be there and fit.
	if o.ID == "" {
		return request{}, fieldErr(wire.FieldOrderID, "the order id is empty")
	}
	if len(o.ID) > wire.MaxOrderID || !printableASCII(o.ID) {
		return request{}, fieldErr(wire.FieldOrderID, fmt.Sprintf("AliKassa takes an order_id of 1–%d printable ASCII characters", wire.MaxOrderID))
	}
	if o.Amount.Currency != c.currency {
		return request{}, &payments.FieldError{Field: "amount", Message: fmt.Sprintf("AliKassa (service %s) takes %s, not %q", c.cfg.Service, c.currency, o.Amount.Currency)}
	}
	if o.Amount.Minor <= 0 || o.Amount.Minor > wire.MaxAmountMinor {
		return request{}, &payments.FieldError{Field: "amount", Message: "must be positive and at most 999999999.99 (decimal 11.2)"}
	}
	amount, err := o.Amount.Decimal()
	if err != nil {
		return request{}, &payments.FieldError{Field: "amount", Message: err.Error()}
	}

	service := pick(opts.Service, c.cfg.Service)
	if err := checkText(wire.FieldService, service, wire.MaxService, true); err != nil {
		return request{}, err
	}
	ip := pick(opts.CustomerIP, c.cfg.CustomerIP)
	if ip == "" {
		return request{}, fieldErr(wire.FieldCustomerIP, "required: send the buyer's IP or set alikassa.customer_ip in the config")
	}
	if addr, err := netip.ParseAddr(ip); err != nil || addr.Zone() != "" {
		return request{}, fieldErr(wire.FieldCustomerIP, "not an IP address")
	}
	code := pick(opts.CustomerCode, c.cfg.CustomerCode)
	if err := checkText(wire.FieldCustomerCode, code, wire.MaxCustomerCode, true); err != nil {
		return request{}, err
	}
	if service == wire.ServiceBDT && !slices.Contains(wire.BankCodesBDT, code) {
		return request{}, fieldErr(wire.FieldCustomerCode, fmt.Sprintf("for %s one of %s", wire.ServiceBDT, strings.Join(wire.BankCodesBDT, ", ")))
	}
	// desc is the order's own text, not an AliKassa option.
	if msg := textProblem(o.Desc, wire.MaxDesc, false); msg != "" {
		return request{}, &payments.FieldError{Field: "desc", Message: msg}
	}
	lifetime := opts.Lifetime
	if lifetime == 0 {
		lifetime = int64(c.lifetime.Seconds())
	}
	if lifetime < wire.MinLifetime || lifetime > wire.MaxLifetime {
		return request{}, fieldErr(wire.FieldLifetime, fmt.Sprintf("seconds, %d–%d", wire.MinLifetime, wire.MaxLifetime))
	}

	f := []wire.Field{
		{Key: wire.FieldAmount, Value: amount},
		{Key: wire.FieldOrderID, Value: o.ID},
		{Key: wire.FieldService, Value: service},
		{Key: wire.FieldCustomerIP, Value: ip},
		{Key: wire.FieldCustomerCode, Value: code},
	}
	// Each redirect and the notification is given by a cabinet id or by a
	// URL, never both; the POS's value wins over the config's pair as a whole.
	type target struct {
		idName, urlName string
		id, cfgID       int64
		u, cfgURL       string
	}
	targets := []target{
		{wire.FieldSuccessRedirectID, wire.FieldSuccessRedirectURL, opts.SuccessRedirectID, c.cfg.SuccessRedirectID, opts.SuccessRedirectURL, c.cfg.SuccessRedirectURL},
		{wire.FieldFailRedirectID, wire.FieldFailRedirectURL, opts.FailRedirectID, c.cfg.FailRedirectID, opts.FailRedirectURL, c.cfg.FailRedirectURL},
		{wire.FieldNotificationID, wire.FieldNotificationURL, opts.NotificationEndpointID, c.cfg.NotificationID, opts.NotificationEndpoint, c.cfg.NotificationURL},
	}
	var urls []wire.Field
	for _, t := range targets {
		id, u := t.id, t.u
		if id == 0 && u == "" {
			id, u = t.cfgID, t.cfgURL
		}
		if id != 0 && u != "" {
			return request{}, fieldErr(t.urlName, "give either "+t.idName+" or "+t.urlName+", not both")
		}
		if id < 0 {
			return request{}, fieldErr(t.idName, "a positive id from the AliKassa cabinet")
		}
		if id > 0 {
			f = append(f, wire.Field{Key: t.idName, Value: id})
		}
		if u != "" {
			if err := checkURL(t.urlName, u); err != nil {
				return request{}, err
			}
			urls = append(urls, wire.Field{Key: t.urlName, Value: u})
		}
	}
	f = append(f, urls...)
	if o.Desc != "" {
		f = append(f, wire.Field{Key: wire.FieldDesc, Value: o.Desc})
	}
	f = append(f, wire.Field{Key: wire.FieldLifetime, Value: lifetime})
	for _, x := range c.cfg.ExtraFields {
		f = append(f, wire.Field{Key: x.Name, Value: x.Value})
	}
	return request{fields: f}, nil
}

func pick(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

// checkText checks a text field's length in characters (the service's
// string(n) is Laravel's max:n, counted in characters).
func checkText(name, v string, limit int, required bool) error {
	if msg := textProblem(v, limit, required); msg != "" {
		return fieldErr(name, msg)
	}
	return nil
}

func textProblem(v string, limit int, required bool) string {
	if v == "" {
		if required {
			return "required"
		}
		return ""
	}
	if !utf8.ValidString(v) {
		return "not valid UTF-8"
	}
	if n := utf8.RuneCountInString(v); n > limit {
		return fmt.Sprintf("%d characters, at most %d", n, limit)
	}
	return ""
}

func checkURL(name, v string) error {
	if err := checkText(name, v, wire.MaxURL, true); err != nil {
		return err
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fieldErr(name, "an absolute http(s) URL")
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
