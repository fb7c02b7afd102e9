package alikassa

import (
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"kassa-agent/payments"
	"kassa-agent/payments/alikassa/internal/wire"
)

// ErrNoticeRefused is a notification that is not AliKassa's: bad or missing
// sign, fields missing, another account. It also matches
// payments.ErrUnauthorized.
var ErrNoticeRefused = errors.New("alikassa: notification refused")

func refuseNotice(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrNoticeRefused, payments.ErrUnauthorized, fmt.Sprintf(format, args...))
}

// VerifyNotice checks a notification as it arrived (GET query parameters):
// it rebuilds the bytes AliKassa signed (PHP json_encode of the configured
// fields in order) and verifies sign with the notifications public key. A
// verified notice is only a hint to ask the status now.
func (c *Client) VerifyNotice(_ http.Header, query url.Values, _ []byte) (payments.Ref, error) {
	if c.notify == nil {
		return payments.Ref{}, refuseNotice("no notifications public key configured")
	}
	return verifyNotice(c.notify, c.hash, c.notice, c.cfg.Account, query)
}

func verifyNotice(pub *rsa.PublicKey, h crypto.Hash, keys []string, account string, q url.Values) (payments.Ref, error) {
	signs := q[wire.NoticeSign]
	if len(signs) != 1 || signs[0] == "" {
		return payments.Ref{}, refuseNotice("one sign parameter required")
	}
	sig, err := base64.StdEncoding.DecodeString(signs[0])
	if err != nil {
		return payments.Ref{}, refuseNotice("sign is not base64")
	}
	var dup string
	data, err := wire.NoticeJSON(keys, func(k string) (string, bool) {
		v := q[k]
		if len(v) > 1 {
			dup = k
		}
		if len(v) == 0 {
			return "", false
		}
		return v[0], true
	})
	if dup != "" {
		// Two values for one key: which one was signed is a guess.
		return payments.Ref{}, refuseNotice("parameter %s given twice", dup)
	}
	if err != nil {
		return payments.Ref{}, refuseNotice("%v", err)
	}
	if err := rsa.VerifyPKCS1v15(pub, h, digest(h, data), sig); err != nil {
		return payments.Ref{}, refuseNotice("signature does not verify")
	}
	// A genuine notice for another account of the merchant is not ours.
	if v, ok := q[wire.NoticeAccount]; ok && account != "" && v[0] != account {
		return payments.Ref{}, refuseNotice("notice for another account")
	}
	ref := payments.Ref{OrderID: q.Get(wire.NoticeOrderID), ProviderID: q.Get(wire.NoticeID)}
	if ref.OrderID == "" {
		return payments.Ref{}, refuseNotice("no order_id")
	}
	return ref, nil
}
