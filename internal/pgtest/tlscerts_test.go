package pgtest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"testing"
)

// TestNewCertsChain: the server certificate verifies against the CA for
// localhost, 127.0.0.1 and ::1 and not for another name nor against the
// wrong CA; the client certificate verifies as a client certificate and
// names the user; both key pairs load.
func TestNewCertsChain(t *testing.T) {
	c, err := NewCerts("someone")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Cleanup()
	pool := func(path string) *x509.CertPool {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(data) {
			t.Fatalf("%s: no certificate", path)
		}
		return p
	}
	leaf := func(certFile, keyFile string) *x509.Certificate {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf
	}
	srv := leaf(c.ServerCert, c.ServerKey)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := srv.Verify(x509.VerifyOptions{DNSName: name, Roots: pool(c.CA)}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
	var hostErr x509.HostnameError
	if _, err := srv.Verify(x509.VerifyOptions{DNSName: "127.0.0.2", Roots: pool(c.CA)}); !errors.As(err, &hostErr) {
		t.Errorf("server certificate for 127.0.0.2: %v, want a HostnameError", err)
	}
	var caErr x509.UnknownAuthorityError
	if _, err := srv.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: pool(c.WrongCA)}); !errors.As(err, &caErr) {
		t.Errorf("server certificate against the wrong CA: %v, want UnknownAuthorityError", err)
	}
	cli := leaf(c.ClientCert, c.ClientKey)
	if _, err := cli.Verify(x509.VerifyOptions{Roots: pool(c.CA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if cli.Subject.CommonName != "someone" {
		t.Errorf("client certificate CN %q", cli.Subject.CommonName)
	}
}
