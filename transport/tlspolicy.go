package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
)

// ClientAuth is what the TLS listeners ask of a client's certificate.
type ClientAuth int

const (
	// ClientCertNone asks for no client certificate (the default): SIP
	// clients authenticate in SIP, if at all (RFC 3261 §26.3.2.2).
	ClientCertNone ClientAuth = iota
	// ClientCertRequest asks for a certificate; a client may send none, but
	// one it sends must chain to TLSPolicy.CAs.
	ClientCertRequest
	// ClientCertRequire refuses the handshake of a client that sends no
	// certificate or one that does not chain to TLSPolicy.CAs (mutual TLS
	// between servers, RFC 5922 §7.3).
	ClientCertRequire
)

func (a ClientAuth) String() string {
	switch a {
	case ClientCertNone:
		return "none"
	case ClientCertRequest:
		return "request"
	case ClientCertRequire:
		return "require"
	}
	return fmt.Sprintf("ClientAuth(%d)", int(a))
}

// TLSPolicy is how TLS peers are verified. It is fixed per handshake:
// SetTLSPolicy changes it for the next handshakes, connections already up
// keep what they were verified with.
type TLSPolicy struct {
	// CAs verifies the servers of outgoing TLS connections and, with
	// VerifyClients, the certificates clients present. nil: the system
	// roots for servers (VerifyClients then needs CAs).
	CAs *x509.CertPool
	// VerifyClients is what is asked of a client's certificate.
	VerifyClients ClientAuth
	// SkipServerVerify accepts any server certificate on outgoing
	// connections. It throws away what TLS is for (RFC 3261 §26.2: a
	// proxy verifies the next hop); only for a lab with self-made
	// certificates.
	SkipServerVerify bool
	// MinVersion is the oldest TLS version accepted both ways:
	// tls.VersionTLS12 (also for 0) or tls.VersionTLS13.
	MinVersion uint16
}

// Errors of the client-certificate check, in the handshake error a
// refused client's connection ends with.
var (
	errNoClientCert        = errors.New("transport: client sent no certificate (tls.verify_clients: require)")
	errUntrustedClientCert = errors.New("transport: client certificate not issued by a CA of tls.ca_file")
)

// LoadCAFile reads a PEM bundle of CA certificates into a pool. A file that
// cannot be read, or that holds no certificate at all, is an error: an
// empty pool would refuse every peer without saying why.
func LoadCAFile(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("transport: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("transport: CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// SetTLSPolicy replaces the verification policy for the next handshakes,
// inbound and outgoing. Connections already up are not verified again.
// Outgoing connections verified under the old policy stay in use.
func (l *Layer) SetTLSPolicy(p TLSPolicy) error {
	if err := p.check(); err != nil {
		return err
	}
	l.setTLSPolicy(p)
	return nil
}

func (p TLSPolicy) check() error {
	switch p.MinVersion {
	case 0, tls.VersionTLS12, tls.VersionTLS13:
	default:
		return fmt.Errorf("transport: TLS MinVersion %#x: use TLS 1.2 or 1.3", p.MinVersion)
	}
	switch p.VerifyClients {
	case ClientCertNone:
	case ClientCertRequest, ClientCertRequire:
		if p.CAs == nil {
			return fmt.Errorf("transport: verifying client certificates (%s) needs CAs", p.VerifyClients)
		}
	default:
		return fmt.Errorf("transport: invalid %v", p.VerifyClients)
	}
	return nil
}

// setTLSPolicy builds the two tls.Configs of a checked policy. They are
// built once per policy, not per handshake: an accepted connection takes
// the server config as it is, a dial clones the client config to set the
// server name.
func (l *Layer) setTLSPolicy(p TLSPolicy) {
	minV := p.MinVersion
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	// Outgoing: RFC 3261 §26.2 requires verifying the server, against the
	// name dial sets (RFC 5922 §7.2) or the address. The certificate comes
	// from l.cert, never put in the configs, so ReloadTLS can replace it
	// under running listeners.
	l.clientTLS.Store(&tls.Config{
		MinVersion:           minV,
		RootCAs:              p.CAs,
		InsecureSkipVerify:   p.SkipServerVerify,
		GetClientCertificate: l.clientCertificate,
	})
	srv := &tls.Config{
		MinVersion:     minV,
		GetCertificate: l.serverCertificate,
	}
	if p.VerifyClients != ClientCertNone {
		// Go would verify the chain itself with VerifyClientCertIfGiven
		// or RequireAndVerifyClientCert; verifying in VerifyConnection
		// instead tells a missing certificate from an untrusted one, which
		// is what Stats and the log report.
		srv.ClientAuth = tls.RequestClientCert
		cas, require := p.CAs, p.VerifyClients == ClientCertRequire
		srv.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyClient(cs, cas, require)
		}
	}
	l.serverTLS.Store(srv)
}

// verifyClient is the check of a client's certificate chain: as Go's
// RequireAndVerifyClientCert, the leaf must chain to cas (the rest of what
// the client sent may serve as intermediates) and be valid for client
// authentication.
func verifyClient(cs tls.ConnectionState, cas *x509.CertPool, require bool) error {
	if len(cs.PeerCertificates) == 0 {
		if require {
			return errNoClientCert
		}
		return nil
	}
	opts := x509.VerifyOptions{
		Roots:         cas,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("%w: %w", errUntrustedClientCert, err)
	}
	return nil
}

// logOnce remembers which sources a failure was already logged for, so a
// peer retrying every few seconds, or a scanner, logs one line rather than
// a line per attempt. It is bounded: when full it starts over, and a
// source may then be logged again.
type logOnce struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

const logOnceMax = 4096

// first reports whether key is new; only the failure path calls it.
func (o *logOnce) first(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.seen[key]; ok {
		return false
	}
	if o.seen == nil || len(o.seen) >= logOnceMax {
		o.seen = make(map[string]struct{})
	}
	o.seen[key] = struct{}{}
	return true
}

// inboundHandshakeFailed counts and logs an accepted connection whose
// handshake failed. A refused client certificate is a policy decision the
// operator wants to see (once per source address); anything else (a
// scanner, a client that gave up, a protocol mismatch) is only Debug.
func (l *Layer) inboundHandshakeFailed(c *Conn, err error) {
	l.stats.tlsErrsIn.Add(1)
	if errors.Is(err, errNoClientCert) || errors.Is(err, errUntrustedClientCert) {
		l.stats.clientCertsRefused.Add(1)
		if l.tlsLogged.first("in " + c.remote.Addr().String()) {
			l.log.Warn("transport: TLS client refused: no trusted client certificate (logged once per source)",
				"remote", c.remote, "err", err)
		}
		return
	}
	l.log.Debug("transport: TLS handshake failed", "remote", c.remote, "conn", c.id, "err", err)
}

// outboundHandshakeFailed counts and logs a dial whose handshake failed:
// the next hop's certificate is not trusted or not valid for the name, or
// it refused ours. Warn once per destination: it is a configuration error
// on one side or the other, and every request to that next hop fails.
func (l *Layer) outboundHandshakeFailed(dst netip.AddrPort, name string, err error) {
	l.stats.tlsErrsOut.Add(1)
	if l.tlsLogged.first("out " + dst.String() + " " + name) {
		l.log.Warn("transport: TLS handshake with next hop failed (logged once per destination)",
			"remote", dst, "server_name", name, "err", err)
	}
}
