// Package alif is the client of Alif's hosted checkout (онлайн-касса,
// Uzbekistan) as a payments.Provider: the agent creates a session from the
// order's items with the merchant Token, shows the buyer the checkout page
// (<checkout>?session_ref=<id>) as a link or QR code, and polls the
// session's status until it is final. A session lives five hours and takes
// one successful payment. Amounts are UZS in tiyin.
//
// Besides Provider, a *Client is a payments.Refunder (full refunds only),
// a payments.Verifier (webhook Signature = base64 HMAC-SHA256 of the raw
// body) and a payments.Prober. It is not a payments.Finder: Alif cannot
// look a session up by our order id, so an ambiguous create goes to a
// person. It is not a payments.Canceler: a session cannot be closed, it
// lapses.
//
// Every name of the API that was assumed rather than read in the seed
// lives in internal/wire (one file), shared with the sandbox in ./sandbox.
package alif
