package alikassa

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	_ "crypto/sha1" // registers crypto.SHA1 for the default signature
	_ "crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/youmark/pkcs8"
)

// ErrKey is a key file that cannot be used; the error names the file and
// why, never the key or the password.
var ErrKey = errors.New("alikassa: unusable key file")

// LoadPrivateKey reads the merchant's RSA private key from a PEM file as the
// cabinet issues it: legacy encrypted PEM ("Proc-Type: 4,ENCRYPTED"),
// encrypted PKCS#8 ("ENCRYPTED PRIVATE KEY"), or unencrypted PKCS#1 /
// PKCS#8. passwordFile may be empty for an unencrypted key. The password is
// the file's first line (the cabinet's password.txt, trailing newline or not).
func LoadPrivateKey(keyFile, passwordFile string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	var password []byte
	if passwordFile != "" {
		p, err := os.ReadFile(passwordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: password file: %w", ErrKey, err)
		}
		password = passwordLine(p)
	}
	key, err := parsePrivateKey(data, password)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKey, keyFile, err)
	}
	return key, nil
}

// passwordLine is the first line of a password file without its line end.
func passwordLine(p []byte) []byte {
	if i := bytes.IndexAny(p, "\r\n"); i >= 0 {
		p = p[:i]
	}
	return p
}

func parsePrivateKey(data, password []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	needPassword := func() error {
		if len(password) == 0 {
			return errors.New("the key is encrypted: name its password file")
		}
		return nil
	}
	der := block.Bytes
	//lint:ignore SA1019 legacy encrypted PEM is what older cabinet archives hold; we only read such files, never write them
	if x509.IsEncryptedPEMBlock(block) {
		if err := needPassword(); err != nil {
			return nil, err
		}
		var err error
		//lint:ignore SA1019 see above: reading existing legacy files is the one correct use left
		if der, err = x509.DecryptPEMBlock(block, password); err != nil {
			return nil, errors.New("cannot decrypt the key: wrong password or damaged file")
		}
	}
	var key any
	var err error
	switch block.Type {
	case "ENCRYPTED PRIVATE KEY":
		if err := needPassword(); err != nil {
			return nil, err
		}
		if key, err = pkcs8.ParsePKCS8PrivateKey(der, password); err != nil {
			return nil, errors.New("cannot decrypt the PKCS#8 key: wrong password or damaged file")
		}
	case "RSA PRIVATE KEY":
		if key, err = x509.ParsePKCS1PrivateKey(der); err != nil {
			return nil, fmt.Errorf("PKCS#1 key: %w", err)
		}
	case "PRIVATE KEY":
		if key, err = x509.ParsePKCS8PrivateKey(der); err != nil {
			return nil, fmt.Errorf("PKCS#8 key: %w", err)
		}
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is %T, AliKassa signs with RSA", key)
	}
	if err := rk.Validate(); err != nil {
		return nil, fmt.Errorf("RSA key: %w", err)
	}
	return rk, nil
}

// LoadPublicKey reads an RSA public key from a PEM file: "PUBLIC KEY"
// (PKIX, what the cabinet's public.pem holds), "RSA PUBLIC KEY" (PKCS#1) or
// a "CERTIFICATE".
func LoadPublicKey(file string) (*rsa.PublicKey, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	key, err := parsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKey, file, err)
	}
	return key, nil
}

func parsePublicKey(data []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	rk, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the key is %T, AliKassa signs with RSA", key)
	}
	return rk, nil
}

// parseHash reads a signature digest name: "sha1" (the default: PHP openssl_sign
// without an algorithm) or "sha256".
func parseHash(name string) (crypto.Hash, error) {
	switch name {
	case "", "sha1", "SHA1", "SHA-1":
		return crypto.SHA1, nil
	case "sha256", "SHA256", "SHA-256":
		return crypto.SHA256, nil
	}
	return 0, fmt.Errorf("alikassa: signature hash %q: want sha1 or sha256", name)
}

// digest hashes data with h (SHA-1 or SHA-256 only).
func digest(h crypto.Hash, data []byte) []byte {
	d := h.New()
	d.Write(data)
	return d.Sum(nil)
}

// sign is the raw (not base64) RSA PKCS#1 v1.5 signature over exactly data.
func sign(key *rsa.PrivateKey, h crypto.Hash, data []byte) ([]byte, error) {
	return rsa.SignPKCS1v15(nil, key, h, digest(h, data))
}
