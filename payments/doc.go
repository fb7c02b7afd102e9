// Package payments holds the types every payment provider package shares:
// money as an integer count of minor units with its currency, conversion of
// money to and from the providers' wire formats, the common payment states
// the provider packages map their own status words into, and the error
// classes callers check across providers with errors.Is.
//
// Provider packages (payments/smartpay, payments/alif, payments/alikassa)
// import this package; this package imports none of them.
package payments
