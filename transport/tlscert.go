package transport

import (
	"crypto/tls"
	"fmt"
)

// ReloadTLS loads a new certificate and key (PEM files, as
// Config.TLSCertFile and TLSKeyFile) and makes the next TLS handshake, on
// the listeners and on outgoing connections (as client certificate),
// present them. Connections already up keep the certificate they were
// set up with: TLS authenticates a connection once, at its handshake.
//
// If the pair cannot be loaded (missing or unreadable file, bad PEM, a key
// that is not the certificate's) the error says why and the certificate
// in use stays. A renewed certificate can thus be installed without
// restarting the proxy and dropping its connections and registrations.
func (l *Layer) ReloadTLS(certFile, keyFile string) error {
	// LoadX509KeyPair checks that the private key matches the
	// certificate's public key, and parses the leaf (Go 1.23+), so a
	// broken pair is refused here rather than failing every handshake.
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("transport: loading TLS certificate: %w", err)
	}
	l.cert.Store(&cert)
	return nil
}

// serverCertificate is the listeners' tls.Config.GetCertificate: the pair
// in use, whatever server name the client asked for (one certificate
// covers all the proxy's names).
func (l *Layer) serverCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := l.cert.Load(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("transport: no TLS certificate")
}

// clientCertificate is the outgoing connections' GetClientCertificate.
// Without a certificate it sends none (an empty one), as a config without
// Certificates does.
func (l *Layer) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := l.cert.Load(); c != nil {
		return c, nil
	}
	return new(tls.Certificate), nil
}
