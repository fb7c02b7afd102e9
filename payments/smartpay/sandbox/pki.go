package sandbox

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the sandbox's throw-away certificate authority, made at start:
// nothing is committed to the repository.
type pki struct {
	caPEM         []byte
	caPool        *x509.CertPool
	server        tls.Certificate
	clientCertPEM []byte
	clientKeyPEM  []byte
}

func newPKI(now time.Time, clientValidity time.Duration) (*pki, error) {
	caKey, caCert, caDER, err := selfSigned("kassa-agent Smart Pay sandbox CA", now)
	if err != nil {
		return nil, err
	}
	p := &pki{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), caPool: x509.NewCertPool()}
	p.caPool.AddCert(caCert)

	srvTmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "smartpay sandbox"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvKey, srvDER, err := issue(srvTmpl, caCert, caKey)
	if err != nil {
		return nil, err
	}
	p.server = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}

	notAfter := now.Add(clientValidity)
	notBefore := now.Add(-time.Hour)
	if nb := notAfter.Add(-24 * time.Hour); nb.Before(notBefore) {
		notBefore = nb // an already-expired certificate, for expiry tests
	}
	cliTmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kassa-agent sandbox till", Organization: []string{"kassa-agent"}},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	cliKey, cliDER, err := issue(cliTmpl, caCert, caKey)
	if err != nil {
		return nil, err
	}
	p.clientCertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cliDER})
	if p.clientKeyPEM, err = keyPEM(cliKey); err != nil {
		return nil, err
	}
	return p, nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
}

func selfSigned(cn string, now time.Time) (*ecdsa.PrivateKey, *x509.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-2 * time.Hour),
		NotAfter:              now.Add(20 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, der, err
}

func issue(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	return key, der, err
}

func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Files names the PEM files a client needs to reach the sandbox.
type Files struct {
	Dir      string
	CAFile   string // the sandbox CA (trust it for the server)
	CertFile string // the till's client certificate
	KeyFile  string // its private key (written owner-only)
}

func (p *pki) write(dir string) (Files, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, err
	}
	f := Files{
		Dir:      dir,
		CAFile:   filepath.Join(dir, "smartpay-sandbox-ca.pem"),
		CertFile: filepath.Join(dir, "smartpay-client.pem"),
		KeyFile:  filepath.Join(dir, "smartpay-client-key.pem"),
	}
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.CAFile, p.caPEM, 0o644}, {f.CertFile, p.clientCertPEM, 0o644}, {f.KeyFile, p.clientKeyPEM, 0o600}} {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return Files{}, fmt.Errorf("sandbox: write %s: %w", w.path, err)
		}
	}
	return f, nil
}

// WriteUntrustedClient writes a client certificate and key signed by a CA
// the sandbox does not trust, to show the refusal in tests and in
// diagnostics. It returns the certificate and key file paths.
func WriteUntrustedClient(dir string) (certFile, keyFile string, err error) {
	stranger, err := newPKI(time.Now(), 365*24*time.Hour)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "untrusted-client.pem"), filepath.Join(dir, "untrusted-client-key.pem")
	if err := os.WriteFile(certFile, stranger.clientCertPEM, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, stranger.clientKeyPEM, 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
