package mailauthtest

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// Key is a DKIM signing key.
type Key struct {
	Signer crypto.Signer
	Algo   string // "ed25519" or "rsa"
}

// Ed25519 returns a new Ed25519 key (RFC 8463).
func Ed25519(t testing.TB) Key {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Key{Signer: priv, Algo: "ed25519"}
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaErr  error
)

// RSA returns an RSA-2048 key, the same one for every caller in the test
// binary (generating one takes long).
func RSA(t testing.TB) Key {
	rsaOnce.Do(func() { rsaKey, rsaErr = rsa.GenerateKey(rand.Reader, 2048) })
	if rsaErr != nil {
		t.Fatal(rsaErr)
	}
	return Key{Signer: rsaKey, Algo: "rsa"}
}

// Record is the key's DKIM TXT record (RFC 6376 §3.6.1).
func (k Key) Record(t testing.TB) string {
	var p []byte
	switch pub := k.Signer.Public().(type) {
	case ed25519.PublicKey:
		p = pub
	default:
		var err error
		if p, err = x509.MarshalPKIXPublicKey(pub); err != nil {
			t.Fatal(err)
		}
	}
	return "v=DKIM1; k=" + k.Algo + "; p=" + base64.StdEncoding.EncodeToString(p)
}

// Publish serves the key at selector._domainkey.domain.
func (k Key) Publish(t testing.TB, d *DNS, domain, selector string) {
	d.TXT(selector+"._domainkey."+domain, k.Record(t))
}

// Sign returns msg (CRLF line ends) with a DKIM-Signature: field of
// domain and selector prepended (relaxed/relaxed).
func (k Key) Sign(t testing.TB, msg, domain, selector string) string {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{
		Domain: domain, Selector: selector, Signer: k.Signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}
