// Package smartpay is the client of the Smart Pay / KD Pay kassa API: mutual
// TLS with the till's client certificate, a session cookie from /v1/auth
// (re-authenticated once on 401), per-call timeouts, and the purchase calls
// commit, release, status, kassa/status (confirm), fiscal and cancel.
//
// Its heart is error classification: every failure is an *Error whose Class
// tells the caller what may have happened at the service. Above all,
// IsAmbiguous(err) means the call may have been applied: a release must then
// never be sent again; ask Status until the outcome is known.
//
// Every name of the API that was assumed rather than documented lives in
// internal/wire (one file), shared with the sandbox in ./sandbox.
package smartpay
