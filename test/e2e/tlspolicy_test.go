package e2e

import (
	"sipedge/digest"

	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // CA certificate, PEM
	pool *x509.CertPool
}

func newCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+"-ca.pem"), pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	if err := os.WriteFile(ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// leaf is an issued certificate: its files, and both in one PEM (the
// form baresip's sip_certificate wants).
type leaf struct {
	certFile, keyFile, bothFile string
	pair                        tls.Certificate
}

// issue makes a server-and-client certificate for the IPs and names.
func (ca *testCA) issue(t *testing.T, dir, name string, ips []net.IP, dns ...string) leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: ips, DNSNames: dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	k := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	l := leaf{certFile: filepath.Join(dir, name+".pem"), keyFile: filepath.Join(dir, name+".key"), bothFile: filepath.Join(dir, name+"-both.pem")}
	for f, b := range map[string][]byte{l.certFile: c, l.keyFile: k, l.bothFile: append(append([]byte{}, c...), k...)} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if l.pair, err = tls.X509KeyPair(c, k); err != nil {
		t.Fatal(err)
	}
	return l
}

var loopback = []net.IP{net.IPv4(127, 0, 0, 1)}

// startTLS runs sipedge with a UDP and a TLS listener and the tls keys
// given (YAML lines under "tls:"); it returns the server, the TLS address,
// and the configuration file with its text (for reloads).
func startTLS(t *testing.T, dir string, srv leaf, tlsKeys string, more string) (*server, string, string, string) {
	t.Helper()
	tlsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	file := filepath.Join(dir, "sipedge.yaml")
	cfg := "dns:\n  servers: [\"127.0.0.1:9\"]\nstore:\n  dir: " + filepath.Join(dir, "data") +
		"\ntls:\n  cert: " + srv.certFile + "\n  key: " + srv.keyFile + "\n" + tlsKeys + more
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--config", file, "--listen", "udp:127.0.0.1:"+strconv.Itoa(freePort(t)), "--listen", "tls:"+tlsAddr)
	return s, tlsAddr, file, cfg
}

// baresip is one headless baresip phone on loopback, driven through its
// ctrl_tcp module (JSON in netstrings).
type baresip struct {
	t    *testing.T
	dir  string
	cmd  *exec.Cmd
	ctrl net.Conn
	rd   *bufio.Reader
}

// startBaresip runs a phone for user that registers at proxy over TLS,
// trusting ca (sip_cafile) and presenting cert, and waits for the 200.
func startBaresip(t *testing.T, dir, user, proxy string, ca *testCA, cert leaf, acctParams ...string) *baresip {
	t.Helper()
	d := filepath.Join(dir, user)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	// The ports are chosen free, then bound by baresip: another process
	// (a connection's ephemeral port) may take one in between, and
	// baresip then stops at once. Choose again a few times.
	var b *baresip
	var ctrlPort int
	for attempt := 1; ; attempt++ {
		var inUse bool
		b, ctrlPort, inUse = runBaresip(t, d, user, proxy, ca, cert, acctParams)
		if !inUse {
			break
		}
		if attempt == 3 {
			t.Fatalf("baresip %s: its ports were taken three times", user)
		}
	}
	// Registered over TLS: baresip logs "{0/TLS/v4} 200 OK".
	b.waitLog("/TLS/v4} 200 OK", 15*time.Second)
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if b.ctrl, err = net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(ctrlPort)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip %s: ctrl_tcp: %v", user, err)
		}
	}
	t.Cleanup(func() { b.ctrl.Close() })
	b.rd = bufio.NewReader(b.ctrl)
	return b
}

func (b *baresip) waitLog(s string, within time.Duration) {
	b.t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, _ := os.ReadFile(filepath.Join(b.dir, "log"))
		if strings.Contains(string(out), s) {
			return
		}
	}
	out, _ := os.ReadFile(filepath.Join(b.dir, "log"))
	b.t.Fatalf("baresip: no %q within %v:\n%s", s, within, out)
}

// command sends a ctrl_tcp command and returns the events received until
// one of the types in until (or the time runs out).
func (b *baresip) command(cmd, params string, within time.Duration, until ...string) []string {
	b.t.Helper()
	msg, _ := json.Marshal(map[string]string{"command": cmd, "params": params, "token": "t"})
	if _, err := fmt.Fprintf(b.ctrl, "%d:%s,", len(msg), msg); err != nil {
		b.t.Fatal(err)
	}
	var events []string
	_ = b.ctrl.SetReadDeadline(time.Now().Add(within))
	for {
		n, err := b.rd.ReadString(':')
		if err != nil {
			b.t.Fatalf("ctrl_tcp: %v (events %v)", err, events)
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(n, ":")))
		if err != nil {
			b.t.Fatalf("ctrl_tcp: bad netstring %q", n)
		}
		body := make([]byte, size+1)
		if _, err := io.ReadFull(b.rd, body); err != nil {
			b.t.Fatal(err)
		}
		var ev struct {
			Event bool   `json:"event"`
			Type  string `json:"type"`
			Param string `json:"param"`
		}
		_ = json.Unmarshal(body[:size], &ev)
		if !ev.Event {
			continue
		}
		events = append(events, ev.Type+" "+ev.Param)
		for _, u := range until {
			if ev.Type == u {
				return events
			}
		}
	}
}

// TestTLSBaresipCall: two real phones register over TLS with a test CA
// (sipedge's certificate has IP SAN 127.0.0.1) and one calls the other
// over TLS end to end; the call is answered.
func TestTLSBaresipCall(t *testing.T) {
	if _, err := exec.LookPath("baresip"); err != nil {
		t.Skip("baresip not installed")
	}
	dir := t.TempDir()
	ca := newCA(t, dir, "lab")
	srv := ca.issue(t, dir, "sipedge", loopback)
	s, tlsAddr, _, _ := startTLS(t, dir, srv, "  ca_file: "+ca.file+"\n", "")
	alice := startBaresip(t, dir, "alice", tlsAddr, ca, ca.issue(t, dir, "alice", loopback))
	startBaresip(t, dir, "bob", tlsAddr, ca, ca.issue(t, dir, "bob", loopback))

	events := alice.command("dial", "sip:bob@"+tlsAddr+";transport=tls", 20*time.Second, "CALL_ESTABLISHED", "CALL_CLOSED")
	if last := events[len(events)-1]; !strings.HasPrefix(last, "CALL_ESTABLISHED") {
		t.Fatalf("call not answered: %v", events)
	}
	alice.command("hangup", "", 10*time.Second, "CALL_CLOSED")
	if strings.Contains(s.logs(), "TLS handshake") {
		t.Errorf("a TLS handshake failed:\n%s", s.logs())
	}
}

// TestTLSBaresipDigest: the same two phones, but sipedge trusts nobody:
// each registers with MD5 digest credentials (401), the caller answers the
// 407 to its INVITE, the callee is reached and both hang up through
// sipedge's signed Record-Route.
func TestTLSBaresipDigest(t *testing.T) {
	if _, err := exec.LookPath("baresip"); err != nil {
		t.Skip("baresip not installed")
	}
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	for _, u := range []string{"alice", "bob"} {
		if err := digest.AddUser(users, u, "example.com", u+"-secret"); err != nil {
			t.Fatal(err)
		}
	}
	ca := newCA(t, dir, "lab")
	srv := ca.issue(t, dir, "sipedge", loopback)
	s, tlsAddr, _, _ := startTLS(t, dir, srv, "  ca_file: "+ca.file+"\n",
		"trusted_networks: []\nauth:\n  realm: example.com\n  users_file: "+users+"\n")
	alice := startBaresip(t, dir, "alice", tlsAddr, ca, ca.issue(t, dir, "alice", loopback), ";auth_pass=alice-secret")
	startBaresip(t, dir, "bob", tlsAddr, ca, ca.issue(t, dir, "bob", loopback), ";auth_pass=bob-secret")

	events := alice.command("dial", "sip:bob@"+tlsAddr+";transport=tls", 20*time.Second, "CALL_ESTABLISHED", "CALL_CLOSED")
	if last := events[len(events)-1]; !strings.HasPrefix(last, "CALL_ESTABLISHED") {
		t.Fatalf("call not answered: %v", events)
	}
	alice.command("hangup", "", 10*time.Second, "CALL_CLOSED")
	logs := s.logs()
	if strings.Contains(logs, "auth failure") {
		t.Errorf("an authentication failed:\n%s", logs)
	}
}

// sipOverTLS sends msg on a TLS connection and returns the status codes
// of the responses read until a final one (or the time runs out).
func sipOverTLS(t *testing.T, c *tls.Conn, msg string, within time.Duration) []int {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(within))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	rd := bufio.NewReader(c)
	var codes []int
	for {
		head, err := readSIP(rd)
		if err != nil {
			t.Fatalf("read: %v (codes %v)", err, codes)
		}
		f := strings.Fields(head)
		if len(f) < 2 || f[0] != "SIP/2.0" {
			continue
		}
		code, _ := strconv.Atoi(f[1])
		codes = append(codes, code)
		if code >= 200 {
			return codes
		}
	}
}

// readSIP reads one message with no body (Content-Length 0) and returns
// its header section.
func readSIP(rd *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return sb.String(), err
		}
		if line == "\r\n" {
			if sb.Len() == 0 {
				continue // keep-alive CRLF
			}
			return sb.String(), nil
		}
		sb.WriteString(line)
	}
}

// tlsOptions is an OPTIONS for sipedge itself at its TLS address.
func tlsOptions(local, remote net.Addr, branch string) string {
	return "OPTIONS sip:" + remote.String() + ";transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS " + local.String() + ";branch=z9hG4bK" + branch + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:t@example.com>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: " + branch + "\r\n" +
		"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
}

// TestTLSVerifyClientsRequire: with verify_clients: require, a client
// without a certificate, or with one from a CA not in ca_file, is refused
// at the handshake (logged once per source); a client with a certificate
// from the CA is served.
func TestTLSVerifyClientsRequire(t *testing.T) {
	dir := t.TempDir()
	ca, other := newCA(t, dir, "lab"), newCA(t, dir, "other")
	srv := ca.issue(t, dir, "sipedge", loopback)
	s, tlsAddr, _, _ := startTLS(t, dir, srv, "  ca_file: "+ca.file+"\n  verify_clients: require\n", "")
	dial := func(certs ...tls.Certificate) (*tls.Conn, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tlsAddr,
			&tls.Config{RootCAs: ca.pool, Certificates: certs})
		if err != nil {
			return nil, err
		}
		// TLS 1.3: the server checks the client's certificate after the
		// client's handshake is over; a refusal shows on the first read.
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, tlsOptions(c.LocalAddr(), c.RemoteAddr(), "probe"+strconv.Itoa(int(time.Now().UnixNano()%1e9)))); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	for _, tt := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no certificate", nil},
		{"certificate of another CA", []tls.Certificate{other.issue(t, dir, "stranger", loopback).pair}},
	} {
		if c, err := dial(tt.certs...); err == nil {
			c.Close()
			t.Errorf("%s: served", tt.name)
		}
	}
	c, err := dial(ca.issue(t, dir, "client", loopback).pair)
	if err != nil {
		t.Fatalf("client with a certificate from ca_file: %v", err)
	}
	defer c.Close()
	if codes := sipOverTLS(t, c, tlsOptions(c.LocalAddr(), c.RemoteAddr(), "ok2"), 5*time.Second); codes[len(codes)-1] != 200 {
		t.Errorf("OPTIONS over the verified connection: %v", codes)
	}
	if n := strings.Count(s.logs(), "TLS client refused"); n != 1 {
		t.Errorf("%d refusal lines for two refusals from 127.0.0.1, want 1:\n%s", n, s.logs())
	}
}

// tlsNextHop is a TLS server standing for the next hop: it records the
// requests it gets and answers each 486.
type tlsNextHop struct {
	addr string
	mu   sync.Mutex
	got  []string
}

func startTLSNextHop(t *testing.T, cert leaf) *tlsNextHop {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert.pair}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h := &tlsNextHop{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				rd := bufio.NewReader(c)
				for {
					req, err := readSIP(rd)
					if err != nil {
						return
					}
					h.mu.Lock()
					h.got = append(h.got, req)
					h.mu.Unlock()
					_, _ = io.WriteString(c, answer(req, "486 Busy Here"))
				}
			}()
		}
	}()
	return h
}

func (h *tlsNextHop) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

// answer builds a response to req's header section: its Vias, From, To
// (with a tag), Call-ID and CSeq.
func answer(req, status string) string {
	var sb strings.Builder
	sb.WriteString("SIP/2.0 " + status + "\r\n")
	for _, line := range strings.Split(req, "\r\n") {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(name) {
		case "via", "from", "call-id", "cseq":
			sb.WriteString(line + "\r\n")
		case "to":
			sb.WriteString(line + ";tag=nh\r\n")
		}
	}
	sb.WriteString("Content-Length: 0\r\n\r\n")
	return sb.String()
}

func tlsInvite(local net.Addr, ruri, callID string) string {
	return "INVITE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/TLS " + local.String() + ";branch=z9hG4bK" + callID + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sips:alice@example.com>;tag=a1\r\nTo: <" + ruri + ">\r\nCall-ID: " + callID + "\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sips:alice@" + local.String() + ">\r\nContent-Length: 0\r\n\r\n"
}

// TestTLSVerifyServer: a TLS next hop whose certificate is not from
// ca_file, or not valid for the address it was routed to, is not sent to:
// the failed connection counts as a 503 from that branch (RFC 3261 §16.7
// step 6 with RFC 3263 §4.3), which the caller gets as 500 (§16.7 step 6:
// a proxy does not pass a 503 upstream). With verify_server false (reloaded) the
// same request is forwarded, and, being a SIPS request, record-routed with
// a sips URI (RFC 3261 §16.6 step 4).
func TestTLSVerifyServer(t *testing.T) {
	dir := t.TempDir()
	ca, other := newCA(t, dir, "lab"), newCA(t, dir, "other")
	srv := ca.issue(t, dir, "sipedge", loopback)
	untrusted := startTLSNextHop(t, other.issue(t, dir, "untrusted", loopback))
	misnamed := startTLSNextHop(t, ca.issue(t, dir, "misnamed", nil, "gw.elsewhere.test")) // no IP SAN
	routes := "routes:\n  - name: untrusted\n    prefix: \"1\"\n    to: \"sips:" + untrusted.addr + "\"\n" +
		"  - name: misnamed\n    prefix: \"2\"\n    to: \"sips:" + misnamed.addr + "\"\n"
	s, tlsAddr, file, cfg := startTLS(t, dir, srv, "  ca_file: "+ca.file+"\n", routes)

	caller, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	call := func(user, callID string) int {
		codes := sipOverTLS(t, caller, tlsInvite(caller.LocalAddr(), "sips:"+user+"@example.com", callID), 20*time.Second)
		return codes[len(codes)-1]
	}
	for _, user := range []string{"100", "200"} {
		if code := call(user, "refused-"+user); code != 500 {
			t.Errorf("INVITE %s: %d, want 500 (next hop not verified)", user, code)
		}
	}
	if n := len(untrusted.requests()) + len(misnamed.requests()); n != 0 {
		t.Fatalf("%d requests reached unverified next hops", n)
	}
	if !s.hasLog("TLS handshake with next hop failed") {
		t.Errorf("no warning for the failed handshakes:\n%s", s.logs())
	}

	s.reload(t, file, strings.Replace(cfg, "ca_file: ", "verify_server: false\n  ca_file: ", 1), "configuration reloaded")
	if !strings.Contains(s.logs(), "tls.verify_server is now false") {
		t.Error("no warning when verify_server turned false")
	}
	if code := call("100", "lab-100"); code != 486 {
		t.Fatalf("with verify_server false: %d, want the next hop's 486", code)
	}
	var reqs []string // the INVITE (the ACK of the 486 follows it)
	for _, r := range untrusted.requests() {
		if strings.HasPrefix(r, "INVITE ") {
			reqs = append(reqs, r)
		}
	}
	if len(reqs) != 1 {
		t.Fatalf("next hop got %d INVITEs", len(reqs))
	}
	if !strings.Contains(reqs[0], "\r\nRecord-Route: <sips:127.0.0.1:") {
		t.Errorf("SIPS request not record-routed with a sips URI:\n%s", reqs[0])
	}
}

// runBaresip starts baresip for startBaresip on newly chosen ports and
// waits until it registered (false) or stopped because a port it was given
// is taken (true; it is then stopped and cleaned up).
func runBaresip(t *testing.T, d, user, proxy string, ca *testCA, cert leaf, acctParams []string) (*baresip, int, bool) {
	t.Helper()
	sipPort, ctrlPort := freePort(t), freePort(t)
	rtp := freePort(t) &^ 1
	conf := fmt.Sprintf(`poll_method		epoll
sip_listen		127.0.0.1:%d
sip_certificate		%s
sip_cafile		%s
call_local_timeout	120
audio_source		ausine,440
ausrc_srate		48000
ausrc_channels		2
audio_alert		none,none
rtp_ports		%d-%d
module_path		/usr/lib/baresip/modules
module			g711.so
module			ausine.so
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:%d
`, sipPort, cert.bothFile, ca.file, rtp, rtp+9, ctrlPort)
	acct := fmt.Sprintf("<sip:%s@%s;transport=tls>;answermode=auto;regint=600;audio_codecs=pcmu%s\n", user, proxy, strings.Join(acctParams, ""))
	if err := os.WriteFile(filepath.Join(d, "config"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "accounts"), []byte(acct), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(d, "log"))
	if err != nil {
		t.Fatal(err)
	}
	b := &baresip{t: t, dir: d, cmd: exec.Command("baresip", "-f", d)}
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = b.cmd.Process.Kill()
			_ = b.cmd.Wait()
			logf.Close()
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			out, _ := os.ReadFile(filepath.Join(d, "log"))
			t.Logf("baresip %s log:\n%s", user, out)
		}
	})
	// Registered over TLS: baresip logs "{0/TLS/v4} 200 OK".
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, _ := os.ReadFile(filepath.Join(d, "log"))
		if strings.Contains(string(out), "Address already in use") {
			stop()
			return nil, 0, true
		}
		if strings.Contains(string(out), "/TLS/v4} 200 OK") {
			return b, ctrlPort, false
		}
	}
	return b, ctrlPort, false // waitLog reports it
}
