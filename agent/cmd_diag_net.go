package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"
)

// How long each network step may take before diag calls it a failure.
const diagNetTimeout = 5 * time.Second

// serverCertWarnBefore is when a provider's own TLS certificate is worth a
// call to the provider: payments stop the day it lapses.
const serverCertWarnBefore = 30 * 24 * time.Hour

// reach checks the way to a provider step by step, so the line names the
// first step that fails: the name resolves, a TCP connection opens, the TLS
// handshake succeeds with a trusted certificate, and how long that
// certificate is still valid. It returns whether the provider can be reached
// (a warning still can). caFile is the provider's own CA ("" = the
// system's roots).
func (d *diagnosis) reach(ctx context.Context, check, rawURL, caFile string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		d.fail(check, fmt.Sprintf("%q is not a URL", rawURL), "fix the provider's URL in the config")
		return false
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	ctx, cancel := context.WithTimeout(ctx, 3*diagNetTimeout)
	defer cancel()

	dns := "IP address (no DNS)"
	if net.ParseIP(host) == nil {
		dctx, dcancel := context.WithTimeout(ctx, diagNetTimeout)
		addrs, err := net.DefaultResolver.LookupHost(dctx, host)
		dcancel()
		if err != nil {
			// The resolver's own address in the message is noise here.
			why := err.Error()
			if de := (*net.DNSError)(nil); errors.As(err, &de) {
				why = de.Err
				if de.IsTimeout {
					why = "no answer from the DNS server"
				}
			}
			d.fail(check, host+": DNS: "+why,
				"the name does not resolve: check this computer's DNS settings and internet connection (nslookup "+host+"), and the URL in the config")
			return false
		}
		dns = fmt.Sprintf("DNS %d %s", len(addrs), plural(len(addrs), "address", "addresses"))
	}
	dialer := net.Dialer{Timeout: diagNetTimeout}
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		d.fail(check, fmt.Sprintf("%s: %s, TCP: %v", u.Host, dns, err),
			"no connection to "+u.Host+": check the internet connection and that the firewall or proxy lets the till out to it")
		return false
	}
	defer conn.Close()
	if u.Scheme != "https" {
		d.ok(check, fmt.Sprintf("%s: %s, TCP ok, plain http (no TLS)", u.Host, dns))
		return true
	}
	roots, err := certPool(caFile)
	if err != nil {
		d.fail(check, err.Error(), "the CA file named in the config must hold the provider's PEM CA certificate")
		return false
	}
	_ = conn.SetDeadline(time.Now().Add(diagNetTimeout))
	tc := tls.Client(conn, &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		detail := fmt.Sprintf("%s: %s, TCP ok, TLS: %v", u.Host, dns, err)
		var rec tls.RecordHeaderError
		var unknown x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		var hostErr x509.HostnameError
		switch {
		case errors.As(err, &rec):
			d.fail(check, detail, "the server there does not speak TLS: check the URL (https:// on the right port) and that no proxy answers in its place")
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
			d.fail(check, detail, "the provider's certificate has expired, or this computer's clock is wrong: check the clock, then tell the provider")
		case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &hostErr):
			d.fail(check, detail, "the certificate is not trusted: a proxy or antivirus may intercept HTTPS, or the URL names the wrong host")
		default:
			d.fail(check, detail, "the TLS handshake failed: check the URL and that no proxy stands between the till and the provider")
		}
		return false
	}
	cs := tc.ConnectionState()
	leaf := cs.PeerCertificates[0]
	left := leaf.NotAfter.Sub(d.now())
	days := int(left.Hours() / 24)
	detail := fmt.Sprintf("%s: %s, TCP ok, %s, certificate valid until %s (%d %s)", u.Host, dns,
		tls.VersionName(cs.Version), leaf.NotAfter.Local().Format("2006-01-02"), days, plural(days, "day", "days"))
	if left <= serverCertWarnBefore {
		d.warn(check, detail, "the provider's own certificate expires soon: payments stop if it is not renewed; tell the provider")
		return true
	}
	d.ok(check, detail)
	return true
}

func certPool(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil // the system's roots
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("CA file " + caFile + " holds no PEM certificate")
	}
	return pool, nil
}
