package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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

// Certs is a TLS certificate chain made at test time (never committed): a
// CA, a server certificate for "localhost", 127.0.0.1 and ::1 signed by it,
// a client certificate signed by it, and a second, unrelated CA. Every
// field is the path of a PEM file.
type Certs struct {
	Dir        string // directory holding every file
	CA         string // the CA certificate (sslrootcert, ssl_ca_file)
	ServerCert string // ssl_cert_file
	ServerKey  string // ssl_key_file, readable by the server account only
	ClientCert string // sslcert, for the role named by the client's CN
	ClientKey  string // sslkey, readable by the current user only
	WrongCA    string // a CA that signed nothing here
}

// NewCerts writes a fresh chain into a new temporary directory, owned by the
// account PostgreSQL runs as (the postgres OS user when root) like the
// server key, as the server requires; the client certificate's common name
// is clientUser. Call Cleanup when done.
func NewCerts(clientUser string) (*Certs, error) {
	as, err := serverAccount()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-certs-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c, err := writeCerts(dir, clientUser, as)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// Cleanup removes the chain's directory.
func (c *Certs) Cleanup() { os.RemoveAll(c.Dir) }

// writeCerts makes the chain in dir.
func writeCerts(dir, clientUser string, as *account) (*Certs, error) {
	if as != nil {
		if err := os.Chown(dir, int(as.uid), int(as.gid)); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	c := &Certs{
		Dir:        dir,
		CA:         filepath.Join(dir, "ca.crt"),
		ServerCert: filepath.Join(dir, "server.crt"),
		ServerKey:  filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.crt"),
		ClientKey:  filepath.Join(dir, "client.key"),
		WrongCA:    filepath.Join(dir, "wrong-ca.crt"),
	}
	caKey, caCert, caDER, err := newCA("pgtest CA")
	if err != nil {
		return nil, err
	}
	_, _, wrongDER, err := newCA("pgtest unrelated CA")
	if err != nil {
		return nil, err
	}
	srvKey, srvDER, err := newLeaf(caCert, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, err
	}
	cliKey, cliDER, err := newLeaf(caCert, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: clientUser},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	files := []struct {
		path, kind string
		der        []byte
		owner      *account
	}{
		{c.CA, "CERTIFICATE", caDER, as},
		{c.WrongCA, "CERTIFICATE", wrongDER, as},
		{c.ServerCert, "CERTIFICATE", srvDER, as},
		{c.ServerKey, "PRIVATE KEY", srvKey, as},
		{c.ClientCert, "CERTIFICATE", cliDER, nil},
		{c.ClientKey, "PRIVATE KEY", cliKey, nil},
	}
	for _, f := range files {
		data := pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der})
		if err := os.WriteFile(f.path, data, 0o600); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		if f.owner != nil {
			if err := os.Chown(f.path, int(f.owner.uid), int(f.owner.gid)); err != nil {
				return nil, fmt.Errorf("pgtest: %w", err)
			}
		}
	}
	// The CA and certificates must be readable by both sides.
	for _, p := range []string{c.CA, c.WrongCA, c.ServerCert} {
		if err := os.Chmod(p, 0o644); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	return c, nil
}

// ServerSettings returns the postgresql.conf settings that turn TLS on with
// this chain and verify client certificates against its CA.
func (c *Certs) ServerSettings() map[string]string {
	return map[string]string{
		"ssl":           "on",
		"ssl_cert_file": c.ServerCert,
		"ssl_key_file":  c.ServerKey,
		"ssl_ca_file":   c.CA,
	}
}

// newCA makes a self-signed CA.
func newCA(name string) (*ecdsa.PrivateKey, *x509.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pgtest: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pgtest: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pgtest: %w", err)
	}
	return key, cert, der, nil
}

// newLeaf signs tmpl with the CA and returns the leaf's PKCS#8 key and
// certificate, both DER.
func newLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (keyDER, certDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pgtest: %w", err)
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pgtest: %w", err)
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pgtest: %w", err)
	}
	return keyDER, certDER, nil
}

// serial returns a random certificate serial number.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}
