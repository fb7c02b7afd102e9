// Package alikassa is the AliKassa provider: signed JSON calls to the
// merchant API (POST /v1/payment, /v1/payment/status, /v1/account/info),
// each with the Account header and a Sign header holding the base64 RSA
// PKCS#1 v1.5 signature over exactly the bytes sent (SHA-1 by default,
// SHA-256 by config), and verification of the notifications AliKassa sends
// as GET query parameters, signed over the PHP json_encode bytes of the
// notification fields.
//
// *Client implements payments.Provider, Finder (status by our order_id
// after an ambiguous create), Verifier and Prober. It is not a Canceler or
// a Refunder: AliKassa publishes neither for payments.
//
// A payment is Paid only when its word is "paid" and payment_amount covers
// amount; money taken short of it is Failed with Partial set and Paid
// showing what came in, for a person. A payment still "wait" after its page
// lifetime (plus a grace) is Expired.
//
// Every name assumed about the wire is in internal/wire; the sandbox in
// sandbox/ speaks the same file.
package alikassa
