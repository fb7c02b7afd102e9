package smartpay

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// How far ahead diagnostics warn about the client certificate's expiry.
const (
	WarnBefore     = 30 * 24 * time.Hour
	CriticalBefore = 3 * 24 * time.Hour
)

// CertInfo describes the client certificate, for diagnostics.
type CertInfo struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// ExpiryLevel grades how soon the certificate stops working.
type ExpiryLevel int

// Expiry levels.
const (
	ExpiryOK          ExpiryLevel = iota // more than 30 days left
	ExpiryWarn                           // 30 days or less
	ExpiryCritical                       // 3 days or less
	ExpiryExpired                        // past NotAfter
	ExpiryNotYetValid                    // before NotBefore (check the clock)
)

func (l ExpiryLevel) String() string {
	return [...]string{"ok", "warn", "critical", "expired", "not_yet_valid"}[l]
}

// Left is the time until the certificate expires (negative once expired).
func (c CertInfo) Left(now time.Time) time.Duration { return c.NotAfter.Sub(now) }

// Expiry grades the certificate at now: warn at 30 days, critical at 3.
func (c CertInfo) Expiry(now time.Time) ExpiryLevel {
	switch left := c.Left(now); {
	case now.Before(c.NotBefore):
		return ExpiryNotYetValid
	case left <= 0:
		return ExpiryExpired
	case left <= CriticalBefore:
		return ExpiryCritical
	case left <= WarnBefore:
		return ExpiryWarn
	}
	return ExpiryOK
}

func certInfo(c *x509.Certificate) CertInfo {
	return CertInfo{
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		Serial:    c.SerialNumber.Text(16),
		NotBefore: c.NotBefore,
		NotAfter:  c.NotAfter,
	}
}

// LoadCertInfo reads the first certificate of a PEM file, for diagnostics
// that run without a client (it does not read the key).
func LoadCertInfo(certFile string) (CertInfo, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return CertInfo{}, fmt.Errorf("smartpay: client certificate: %w", err)
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return CertInfo{}, errors.New("smartpay: client certificate: no CERTIFICATE block in " + certFile)
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return CertInfo{}, fmt.Errorf("smartpay: client certificate %s: %w", certFile, err)
		}
		return certInfo(c), nil
	}
}
