package sandbox

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/youmark/pkcs8"
)

// Files names the key files the sandbox writes for a client.
type Files struct {
	Dir string
	// PrivateKeyPKCS8 is the merchant's payments key as encrypted PKCS#8
	// ("ENCRYPTED PRIVATE KEY", PBES2 AES-256-CBC), PrivateKeyLegacy the
	// same key as legacy encrypted PEM ("Proc-Type: 4,ENCRYPTED",
	// AES-256-CBC); both open with PasswordFile.
	PrivateKeyPKCS8  string
	PrivateKeyLegacy string
	PasswordFile     string
	PublicKeyFile    string // the payments public key (PKIX "PUBLIC KEY")
	// NotifyPublicKeyFile is the notifications public key: the sandbox
	// signs notifications with its private half.
	NotifyPublicKeyFile string
}

// KeyPairs are the sandbox's RSA keys: the merchant's payments pair (the
// client signs with the private key, the sandbox verifies with the public)
// and the notifications pair (the sandbox signs).
type KeyPairs struct {
	Merchant *rsa.PrivateKey
	Notify   *rsa.PrivateKey
	Password string
}

var (
	keysOnce sync.Once
	keys     KeyPairs
	keysErr  error
)

// GenerateKeys makes fresh 2048-bit key pairs and a random password.
func GenerateKeys() (KeyPairs, error) {
	m, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return KeyPairs{}, err
	}
	n, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return KeyPairs{}, err
	}
	return KeyPairs{Merchant: m, Notify: n, Password: randomText(12)}, nil
}

// processKeys generates the key pairs once per process: RSA generation is
// the slow part of starting a sandbox, and tests start many.
func processKeys() (KeyPairs, error) {
	keysOnce.Do(func() { keys, keysErr = GenerateKeys() })
	return keys, keysErr
}

// WriteFiles writes the client's key files into dir (created if needed),
// owner-only.
func (k KeyPairs) WriteFiles(dir string) (Files, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, err
	}
	f := Files{
		Dir:                 dir,
		PrivateKeyPKCS8:     filepath.Join(dir, "private.pem"),
		PrivateKeyLegacy:    filepath.Join(dir, "private-legacy.pem"),
		PasswordFile:        filepath.Join(dir, "password.txt"),
		PublicKeyFile:       filepath.Join(dir, "public.pem"),
		NotifyPublicKeyFile: filepath.Join(dir, "notify-public.pem"),
	}
	p8, err := pkcs8.MarshalPrivateKey(k.Merchant, []byte(k.Password), nil)
	if err != nil {
		return Files{}, fmt.Errorf("sandbox: PKCS#8 key: %w", err)
	}
	//lint:ignore SA1019 the sandbox must write the legacy format the cabinet once issued, so the client's reader of it is tested
	legacy, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.Merchant), []byte(k.Password), x509.PEMCipherAES256)
	if err != nil {
		return Files{}, fmt.Errorf("sandbox: legacy key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.Merchant.PublicKey)
	if err != nil {
		return Files{}, err
	}
	npub, err := x509.MarshalPKIXPublicKey(&k.Notify.PublicKey)
	if err != nil {
		return Files{}, err
	}
	for _, w := range []struct {
		name string
		data []byte
	}{
		{f.PrivateKeyPKCS8, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: p8})},
		{f.PrivateKeyLegacy, pem.EncodeToMemory(legacy)},
		// The cabinet's password.txt ends with a line break; so does ours.
		{f.PasswordFile, []byte(k.Password + "\n")},
		{f.PublicKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})},
		{f.NotifyPublicKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: npub})},
	} {
		if err := os.WriteFile(w.name, w.data, 0o600); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}
