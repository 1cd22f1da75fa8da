// Package config loads sipedge's YAML configuration. Decoding is strict: an
// unknown key, a value of the wrong type or an invalid value is an error that
// names the key, its line and what would be accepted. With no file, the
// embedded defaults describe the zero-configuration sipedge.
package config

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"sipedge/admin"
	"sipedge/features/dialplan"
	"sipedge/hep"
	"sipedge/nat"
	"sipedge/proxy"
	"sipedge/sip"
	"sipedge/transport"
	"sipedge/txn"
)

// Config is the whole configuration.
type Config struct {
	// Listen lists "[udp:|tcp:|tls:]ip:port"; without a protocol both UDP
	// and TCP. Default: UDP and TCP on 0.0.0.0:5060 and [::]:5060.
	Listen []string `yaml:"listen"`
	TLS    TLS      `yaml:"tls"`
	// Domains are the SIP domains sipedge is responsible for (registrar
	// and location service). Empty: every domain is local, which is the
	// zero-configuration behaviour.
	Domains   []string  `yaml:"domains"`
	Log       Log       `yaml:"log"`
	Limits    Limits    `yaml:"limits"`
	Registrar Registrar `yaml:"registrar"`
	Store     Store     `yaml:"store"`
	Transport Transport `yaml:"transport"`
	// OutboundProxy receives every request for a non-local domain that no
	// route matches (a SIP URI, e.g. "sip:proxy.example.net;transport=tcp").
	OutboundProxy string   `yaml:"outbound_proxy"`
	Routes        []Route  `yaml:"routes"`
	Media         Media    `yaml:"media"`
	NAT           NAT      `yaml:"nat"`
	Sessions      Sessions `yaml:"sessions"`
	DNS           DNS      `yaml:"dns"`
	Shutdown      Shutdown `yaml:"shutdown"`
	// MemoryLimitMB is a soft limit for the Go heap, in MiB (0: none, or
	// the GOMEMLIMIT environment variable), for machines where sipedge
	// must stay small (docs/PERFORMANCE.md).
	MemoryLimitMB int `yaml:"memory_limit_mb"`
	// SymmetricResponses: see --symmetric-responses.
	SymmetricResponses *bool `yaml:"symmetric_responses"`
	// TrustedNetworks are the sources served without authentication;
	// requests from anywhere else are refused with 403 unless auth is
	// configured (then they must authenticate, see Auth). An empty list
	// trusts nobody. "loopback" stands
	// for 127.0.0.0/8 and ::1; "private" for nat.PrivatePrefixes: RFC 1918,
	// RFC 6598 (100.64.0.0/10), 169.254.0.0/16, fc00::/7 and fe80::/10, the
	// same networks that count as private for NAT detection. This is what
	// keeps a zero-configuration sipedge from being an open relay.
	TrustedNetworks []string `yaml:"trusted_networks"`
	// MIME lists the media types a request body may have, per direction.
	MIME MIME `yaml:"mime"`
	// ServerHeader is the Server header of sipedge's responses and the
	// User-Agent of its own requests. Default "sipedge", without a
	// version (a version tells a scanner which flaws to try); empty: no
	// such header at all.
	ServerHeader string `yaml:"server_header"`
	// Auth: digest authentication of sources outside trusted_networks.
	Auth Auth `yaml:"auth"`
	// Security: per-source limits and bans (features/guard).
	Security Security `yaml:"security"`
	// Admin is the operations HTTP server (docs/API.md).
	Admin Admin `yaml:"admin"`
	// HEP mirrors every SIP message to a HEP v3 collector.
	HEP HEP `yaml:"hep"`
	// CallLog writes a JSON line per finished call.
	CallLog CallLog `yaml:"call_log"`
	// TopologyHiding hides the inside network from the next hops listed
	// in its peers (features/topohide). Off while peers is empty.
	TopologyHiding TopologyHiding `yaml:"topology_hiding"`
	// Pools are named groups of upstreams (PBXs, a provider's proxies)
	// that routes send to with to: pool:NAME (features/pool).
	Pools []Pool `yaml:"pools"`
	// Trunks are SIP providers sipedge registers itself to; each is the
	// destination trunk:NAME of routes (features/trunk).
	Trunks []Trunk `yaml:"trunks"`
	// DialPlan rewrites, routes and edits requests by their Request-URI
	// user (features/dialplan): the first matching rule applies.
	DialPlan []dialplan.Rule `yaml:"dial_plan"`
	// Survival keeps phones registered through sipedge (the gateway
	// deployment) working while their provider does not answer
	// (features/gateway).
	Survival Survival `yaml:"survival"`
}

// MIME holds the allow-lists of request body media types
// ("type/subtype", "type/*", or "*/*" for any). Inbound applies to
// requests from sources outside trusted_networks, outbound to requests
// from inside. A request with another body gets 415 with Accept.
type MIME struct {
	Inbound  []string `yaml:"inbound"`
	Outbound []string `yaml:"outbound"`
}

// DefaultMIME is the allow-list of both directions (docs/CONFIG.md, mime,
// says why these).
func DefaultMIME() []string {
	return []string{
		"application/sdp",                    // sessions (RFC 3264)
		"multipart/mixed",                    // SDP with ISUP, location (RFC 3204, RFC 6442); parts are checked
		"multipart/alternative",              // RFC 2046 §5.1.4
		"multipart/related",                  // RFC 2387
		"application/dtmf-relay",             // INFO DTMF (the de facto format)
		"application/dtmf",                   // INFO DTMF (key name only)
		"message/sipfrag",                    // REFER's NOTIFY (RFC 3515, RFC 3420)
		"text/plain",                         // MESSAGE (RFC 3428)
		"application/pidf+xml",               // presence (RFC 3863)
		"application/simple-message-summary", // message waiting (RFC 3842)
		"application/isup",                   // SIP-T/SIP-I (RFC 3204)
		"application/media_control+xml",      // video picture fast update in INFO (RFC 5168)
	}
}

// Auth configures digest authentication (RFC 3261 §22, RFC 8760) of
// requests from outside the trusted networks. Off until users_file is
// set.
type Auth struct {
	// Realm is the protection domain of the challenges; the users file's
	// hashes are computed for it. Default: the first of domains.
	Realm string `yaml:"realm"`
	// UsersFile holds one user per line with password hashes only
	// (sipedge users add FILE USER --realm REALM writes it). SIGHUP
	// reads it again.
	UsersFile string `yaml:"users_file"`
	// Algorithms are offered in this order, one challenge each: MD5,
	// SHA-256, SHA-512-256. Default [MD5]: most deployed phones are
	// MD5-only, some fail when SHA-256 comes first, and Debian's baresip
	// 1.0 fails to register when any challenge is SHA-256.
	Algorithms []string `yaml:"algorithms"`
	// AllowUnauthenticatedToLocal serves calls from anyone to local
	// users (a public SIP address); otherwise strangers are challenged.
	AllowUnauthenticatedToLocal bool `yaml:"allow_unauthenticated_to_local"`
	// Identities lets an authentication user register or call as other
	// local users: {pbx: ["*"], alice: ["100", "alice.smith"]}.
	Identities map[string][]string `yaml:"identities,omitempty"`
}

// Security configures the per-source limits and temporary bans
// (features/guard): a banned source's requests are dropped unanswered.
type Security struct {
	Rate         RateLimit    `yaml:"rate"`
	AuthFailures AuthFailures `yaml:"auth_failures"`
	// LimitTrusted applies the limits to trusted_networks too (exempt by
	// default).
	LimitTrusted bool `yaml:"limit_trusted"`
	// LiftBans lifts the bans of these sources ("all", an address or a
	// prefix) each time the configuration is loaded (start and SIGHUP).
	LiftBans []string `yaml:"lift_bans"`
	// MaxTrackedSources bounds the sources (and, apart, the users)
	// whose counts are kept.
	MaxTrackedSources int `yaml:"max_tracked_sources"`
}

// RateLimit bans a source that sends more than Requests requests within
// Window for Ban (Kamailio pike's idea). Requests 0: off.
type RateLimit struct {
	Requests int      `yaml:"requests"`
	Window   Duration `yaml:"window"`
	Ban      Duration `yaml:"ban"`
}

// AuthFailures bans a source with PerSource failed authentications within
// Window, and locks a user with PerUser failures from any sources (except
// for the sources it authenticated from recently), for Ban. 0: that count
// is off.
type AuthFailures struct {
	PerSource int      `yaml:"per_source"`
	PerUser   int      `yaml:"per_user"`
	Window    Duration `yaml:"window"`
	Ban       Duration `yaml:"ban"`
}

// LiftPrefixes returns the parsed LiftBans: "all" is 0.0.0.0/0 and ::/0,
// an address its own /32 or /128.
func (s Security) LiftPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, v := range s.LiftBans {
		p, _ := parseLift(v)
		out = append(out, p...)
	}
	return out
}

func parseLift(v string) ([]netip.Prefix, error) {
	if v == "all" {
		return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, nil
	}
	if a, err := netip.ParseAddr(v); err == nil {
		a = a.Unmap()
		return []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return nil, fmt.Errorf("%q: want all, an address such as 203.0.113.7 or a prefix such as 203.0.113.0/24", v)
	}
	return []netip.Prefix{p.Masked()}, nil
}

// TopologyHiding configures topology hiding towards peers: the next hops
// that must not learn the addresses of the inside network.
type TopologyHiding struct {
	// Peers are the next hops towards which hiding applies: CIDR
	// prefixes (a branch whose destination is in one) or names of
	// routes (their "to" address). Empty: topology hiding is off.
	Peers []string `yaml:"peers"`
	// Via: a peer gets only sipedge's Via; the others are put back on
	// its responses.
	Via *bool `yaml:"via"`
	// Contact: an inside address in a Contact towards a peer becomes
	// sipedge's, the original encoded in the user part.
	Contact *bool `yaml:"contact"`
	// RecordRoute: Record-Route entries of inside proxies are removed
	// towards a peer, kept encoded in a Record-Route of sipedge's.
	RecordRoute *bool `yaml:"record_route"`
	// CallID: a Call-ID naming an inside address is encoded towards a
	// peer.
	CallID *bool `yaml:"call_id"`
}

// On reports whether topology hiding is configured.
func (t *TopologyHiding) On() bool { return len(t.Peers) > 0 }

// HEP configures the capture agent: every SIP message sipedge receives or
// sends, TLS decrypted, and a media quality report per relayed call, to
// HEP v3 collectors (Homer, sngrep -L).
type HEP struct {
	// Collectors are "udp:host:port" or "tcp:host:port" each (a bare
	// host:port is UDP); every packet goes to each of them (a collector
	// that is slow or gone does not hold up the others). Empty: no
	// capture.
	Collectors []string `yaml:"collectors"`
	// CaptureID is the capture agent id in every packet (Homer shows it).
	CaptureID int `yaml:"capture_id"`
	// Password is sent as the HEP auth key when set.
	Password string `yaml:"password"`
	// Node is sent as the node name when set.
	Node string `yaml:"node"`
	// Collector is the former way to name one collector: the same as
	// collectors: [VALUE] (an alias: never suggested for a misspelt key). Loading moves it into Collectors, so it is
	// always empty in a loaded Config.
	Collector string `yaml:"collector,omitempty" alias:"collectors"`
	// ID is the former name of capture_id; loading moves it into
	// CaptureID, so it is always nil in a loaded Config.
	ID *int `yaml:"id,omitempty" alias:"capture_id"`
}

// aliases moves the former keys (collector, id) into the current ones.
// Writing a key under both names is refused: which one was meant is not
// clear.
func (h *HEP) aliases(root *yaml.Node, bad func(key, msg string) error) error {
	if hasKey(root, "hep.collector") && hasKey(root, "hep.collectors") {
		return bad("hep.collector", "the former name of collectors; write only collectors: [udp:host:port, ...]")
	}
	if hasKey(root, "hep.id") && hasKey(root, "hep.capture_id") {
		return bad("hep.id", "the former name of capture_id; write only capture_id")
	}
	if h.Collector != "" {
		h.Collectors, h.Collector = []string{h.Collector}, ""
	}
	if h.ID != nil {
		h.CaptureID, h.ID = *h.ID, nil
	}
	return nil
}

// validate checks the collectors (one error names the key the file used)
// and the capture id.
func (h *HEP) validate(root *yaml.Node, bad func(key, msg string) error) error {
	collectors, captureID := "hep.collectors", "hep.capture_id"
	if hasKey(root, "hep.collector") {
		collectors = "hep.collector"
	}
	if hasKey(root, "hep.id") {
		captureID = "hep.id"
	}
	seen := make(map[string]string, len(h.Collectors))
	for _, c := range h.Collectors {
		proto, addr, err := hep.ParseCollector(c)
		if err != nil {
			return bad(collectors, err.Error())
		}
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			addr = ap.String() // 127.0.0.1:9060 and udp:127.0.0.1:9060 are one collector
		}
		addr = proto + ":" + addr
		if first, dup := seen[addr]; dup {
			return bad(collectors, fmt.Sprintf("%q and %q are the same collector; list it once", first, c))
		}
		seen[addr] = c
	}
	if h.CaptureID < 0 || h.CaptureID > 1<<32-1 {
		return bad(captureID, fmt.Sprintf("%d: use 0 to 4294967295", h.CaptureID))
	}
	return nil
}

// CallLog configures the call log (features/calllog).
type CallLog struct {
	// File is appended to, one JSON line per call; "stdout" writes to
	// standard output; empty: no call log. SIGHUP reopens it (logrotate).
	File string `yaml:"file"`
	// Flush is how long a finished call's line may wait to be written
	// with the next ones (default 100ms; 0: each line at once).
	Flush Duration `yaml:"flush"`
}

// Admin configures the operations HTTP server.
type Admin struct {
	// Listen is host:port, or "off". Default 127.0.0.1:8080: loopback
	// only, so the zero configuration exposes nothing.
	Listen string `yaml:"listen"`
	// Token is the bearer token every request must carry
	// (Authorization: Bearer TOKEN); required when Listen is not a
	// loopback address.
	Token string `yaml:"token"`
}

// Shutdown configures the graceful stop.
type Shutdown struct {
	// Drain is how long the first SIGTERM/SIGINT lets calls in progress
	// go on (new calls get 503) before sipedge stops; it stops sooner
	// when they are over. 0: stop at once.
	Drain Duration `yaml:"drain"`
}

// TLS names the certificate and key for tls and wss listeners, and how TLS peers
// are verified.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// CAFile is a PEM bundle of the CA certificates that next hops'
	// server certificates and clients' certificates must chain to. Empty:
	// the system roots verify next hops (and clients cannot be verified).
	CAFile string `yaml:"ca_file"`
	// VerifyClients: none (default), request (a certificate is asked
	// for; one sent must chain to ca_file) or require (a client without
	// one chaining to ca_file is refused at the handshake).
	VerifyClients string `yaml:"verify_clients"`
	// VerifyServer: the certificate of a TLS next hop must chain to
	// ca_file (or the system roots) and be valid for the SIP domain the
	// request was routed to (RFC 5922). false is for labs only.
	VerifyServer bool `yaml:"verify_server"`
	// MinVersion is the oldest TLS version accepted: "1.2" or "1.3".
	MinVersion string `yaml:"min_version"`
}

// validate checks the verification keys. The CA file is read here so a
// path that is wrong, or a file that is not a PEM bundle, stops start-up
// (and is refused by a reload) with the key's name, not at the first
// handshake.
func (t *TLS) validate(bad func(key, msg string) error) error {
	switch t.VerifyClients {
	case "none":
	case "request", "require":
		if t.CAFile == "" {
			return bad("tls.verify_clients", fmt.Sprintf("%q needs tls.ca_file, the CA certificates client certificates must chain to", t.VerifyClients))
		}
	default:
		return bad("tls.verify_clients", fmt.Sprintf("%q: use none, request or require", t.VerifyClients))
	}
	switch t.MinVersion {
	case "1.2", "1.3":
	default:
		return bad("tls.min_version", fmt.Sprintf("%q: use \"1.2\" or \"1.3\"", t.MinVersion))
	}
	if t.CAFile != "" {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return bad("tls.ca_file", fmt.Sprintf("%v; give a readable PEM file of CA certificates", err))
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return bad("tls.ca_file", fmt.Sprintf("%s holds no PEM certificate; give a file of \"-----BEGIN CERTIFICATE-----\" blocks", t.CAFile))
		}
	}
	return nil
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// Limits bound what the parser accepts (see sip.Limits).
type Limits struct {
	MaxMessageSize int `yaml:"max_message_size"`
	MaxHeaders     int `yaml:"max_headers"`
	MaxVias        int `yaml:"max_vias"`
	// MaxTransactions caps the live server transactions: past it a new
	// request is answered 503 with Retry-After, without a transaction.
	MaxTransactions int `yaml:"max_transactions"`
}

// Registrar configures REGISTER handling (RFC 3261 §10.3).
type Registrar struct {
	MinExpires     Duration `yaml:"min_expires"`
	MaxExpires     Duration `yaml:"max_expires"`
	DefaultExpires Duration `yaml:"default_expires"`
	MaxContacts    int      `yaml:"max_contacts"`
}

// Store configures the embedded durable store.
type Store struct {
	Dir string `yaml:"dir"`
	// Sync is what a binding must reach before its 200 OK is sent:
	// "fsync" (the default) the disk, so no acknowledged binding is lost
	// even to a power cut; "write" the kernel (the log is written, not
	// fsynced), so a crash or restart of sipedge loses nothing but a crash
	// of the machine may lose the last second or so — an in-memory
	// registrar such as Kamailio's usrloc without a database keeps less.
	// It saves disk I/O and REGISTER latency more than CPU (a few % at
	// 4000 REGISTER/s, docs/PERFORMANCE.md).
	Sync string `yaml:"sync"`
	// SyncDelay is how long the first binding of a batch waits for others
	// to share its fsync (group commit): longer means fewer fsyncs at
	// ordinary rates and that much more latency for REGISTER.
	SyncDelay Duration `yaml:"sync_delay"`
	// Redis, when set, keeps the bindings, the gateway's passive
	// bindings, bans and the shared secret in Redis instead, shared by
	// every sipedge instance configured with the same server and prefix (a
	// cluster; package cluster). The embedded store still holds what is
	// this instance's alone (the topology-hiding key).
	Redis *Redis `yaml:"redis"`
}

// Redis says how to reach the Redis server of a cluster.
type Redis struct {
	// Addrs: one address (host:port) is one server; with Sentinel.Master
	// they are the Sentinels (a Redis Cluster is not supported).
	Addrs    []string `yaml:"addrs"`
	Sentinel struct {
		Master string `yaml:"master"`
	} `yaml:"sentinel"`
	Password string `yaml:"password"`
	DB       int    `yaml:"db"`
	Prefix   string `yaml:"prefix"`
	// Node is this instance's SIP address as the other instances reach
	// it (ip:port, UDP). Default: the first listen address, when it is
	// not a wildcard.
	Node string `yaml:"node"`
	// WaitReplicas: a REGISTER is answered once this many replicas have
	// its binding (Redis WAIT), so a Sentinel failover loses none.
	WaitReplicas int `yaml:"wait_replicas"`
}

// Transport tunes the sockets.
type Transport struct {
	UDPReaders  int      `yaml:"udp_readers"`
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MessageTimeout bounds a message on a stream from its first byte, a
	// new connection's first message and a TLS handshake.
	MessageTimeout Duration `yaml:"message_timeout"`
	// MaxConnections caps the inbound TCP/TLS connections in total,
	// MaxConnectionsPerSource those from one IP address.
	MaxConnections          int `yaml:"max_connections"`
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
	// WebSocketOrigins are the origins whose web pages may open ws:/wss:
	// connections (host patterns, or scheme://host patterns); empty: any.
	WebSocketOrigins []string `yaml:"websocket_origins"`
}

// Route sends matching requests to a fixed next hop.
type Route struct {
	Name   string `yaml:"name"`
	Domain string `yaml:"domain"` // Request-URI host to match; empty: any
	Prefix string `yaml:"prefix"` // Request-URI user (or tel number) prefix; empty: any
	To     string `yaml:"to"`     // next hop SIP URI
	// Stateless forwards matching requests without transactions (RFC
	// 3261 §16.11): no 100 Trying, no retransmissions or failover by
	// sipedge, less memory and CPU per call. For a next hop that is
	// reliable and does its own retransmissions, such as a trunk.
	Stateless bool `yaml:"stateless"`
}

// Sessions configures session timers (RFC 4028).
type Sessions struct {
	// MinSE is the smallest session interval accepted; an INVITE asking
	// for less is answered 422 with this Min-SE. RFC 4028 §5: at least 90s.
	MinSE Duration `yaml:"min_se"`
	// Interval is put as Session-Expires into INVITEs that ask for no
	// session timer, so calls between phones that would not ask still end
	// when they die. 0: not inserted.
	Interval Duration `yaml:"interval"`
}

// NAT configures what sipedge does for phones behind NAT.
type NAT struct {
	// Keepalive is how NAT mappings of phones registered over UDP are
	// kept open: options (an OPTIONS request; a phone that never answers
	// loses its binding after keepalive_failures), crlf (a bare CRLFCRLF),
	// or none.
	Keepalive         string   `yaml:"keepalive"`
	KeepaliveInterval Duration `yaml:"keepalive_interval"`
	KeepaliveFailures int      `yaml:"keepalive_failures"`
}

// Media configures the RTP relay.
type Media struct {
	// Relay: auto (calls with a side behind NAT or on another interface),
	// always, or never.
	Relay string `yaml:"relay"`
	// Ports is the UDP port range of relayed streams, "min-max", min even
	// (RTP even, RTCP odd above it).
	Ports string `yaml:"ports"`
	// Latch: first (lock each side to its first packet's source) or ssrc
	// (move only for a packet with the same SSRC).
	Latch string `yaml:"latch"`
	// Inactivity frees a call's relay ports when no packet crossed any of
	// its streams for this long.
	Inactivity        Duration `yaml:"inactivity"`
	MaxCalls          int      `yaml:"max_calls"`            // 0: only the port range limits
	MaxStreamsPerCall int      `yaml:"max_streams_per_call"` // media sections per call
	MaxCallsPerUser   int      `yaml:"max_calls_per_user"`   // relayed calls one caller has at once; 0: no limit
	// Firewall names an nftables chain, "FAMILY TABLE CHAIN", in which
	// sipedge opens each relayed stream's ports for the call's lifetime
	// (a set and one rule of its own). Empty: none.
	Firewall string `yaml:"firewall"`
	// Kernel: auto (hand latched streams to nftables when sipedge may:
	// Linux, CAP_NET_ADMIN, IPv4 forwarding on; else userspace, said once
	// in the log), on (the same, but not starting without it), or off.
	Kernel string `yaml:"kernel"`
}

// PortRange parses Media.Ports.
func (m Media) PortRange() (lo, hi int, err error) {
	a, b, ok := strings.Cut(m.Ports, "-")
	if ok {
		lo, err = strconv.Atoi(strings.TrimSpace(a))
		if err == nil {
			hi, err = strconv.Atoi(strings.TrimSpace(b))
		}
	}
	if !ok || err != nil || lo < 1024 || hi > 65535 || lo%2 != 0 || hi < lo+1 {
		return 0, 0, fmt.Errorf("%q: want an even first port >= 1024 and a last port above it, e.g. 10000-29999", m.Ports)
	}
	return lo, hi, nil
}

// DNS configures RFC 3263 resolution.
type DNS struct {
	Servers []string `yaml:"servers"` // ip:port; empty: /etc/resolv.conf
}

// Duration is a time.Duration written as "30s", "5m", "1h".
type Duration struct{ time.Duration }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return &Error{Line: n.Line, Key: "", Msg: fmt.Sprintf("%q is not a duration; write e.g. 30s, 5m or 1h", n.Value)}
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes d the way it is read: "90s", "5m", "1h", "1m30s".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String is d as a configuration file would write it: "90s", "5m", "1h".
func (d Duration) String() string {
	v := d.Duration
	switch {
	case v == 0:
		return "0s"
	case v%time.Hour == 0:
		return fmt.Sprintf("%dh", v/time.Hour)
	case v%time.Minute == 0:
		return fmt.Sprintf("%dm", v/time.Minute)
	case v%time.Second == 0:
		return fmt.Sprintf("%ds", v/time.Second)
	}
	return v.String()
}

// Error is a configuration error with its position.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config")
	if e.File != "" {
		b.WriteString(" " + e.File)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": " + printableKey(e.Key))
	}
	// One line whatever the value quoted in it: a YAML scalar may span
	// lines.
	b.WriteString(": " + strings.ReplaceAll(strings.ReplaceAll(e.Msg, "\r", `\r`), "\n", `\n`))
	return b.String()
}

// printableKey quotes a key with control characters or spaces (a key as
// the file wrote it, line breaks included, must not break the one-line
// error).
func printableKey(k string) string {
	for _, c := range k {
		if c < 0x20 || c == 0x7f || c == ' ' {
			return strconv.Quote(k)
		}
	}
	return k
}

// Default returns the zero-configuration settings.
func Default() *Config {
	t := true
	return &Config{
		Listen: []string{"0.0.0.0:5060", "[::]:5060"},
		TLS:    TLS{VerifyClients: "none", VerifyServer: true, MinVersion: "1.2"},
		Log:    Log{Level: "info", Format: "text"},
		Limits: Limits{MaxMessageSize: sip.DefaultMaxMessageSize, MaxHeaders: sip.DefaultMaxHeaders, MaxVias: sip.DefaultMaxVias,
			MaxTransactions: txn.DefaultMaxServers},
		Registrar: Registrar{
			MinExpires:     Duration{60 * time.Second},
			MaxExpires:     Duration{time.Hour},
			DefaultExpires: Duration{time.Hour},
			MaxContacts:    10,
		},
		TrustedNetworks: []string{"loopback", "private"},
		Store:           Store{Dir: "sipedge-data", Sync: "fsync", SyncDelay: Duration{time.Millisecond}},
		CallLog:         CallLog{Flush: Duration{100 * time.Millisecond}},
		Admin:           Admin{Listen: "127.0.0.1:8080"},
		HEP:             HEP{CaptureID: 2001},
		Transport: Transport{IdleTimeout: Duration{transport.DefaultIdleTimeout}, MessageTimeout: Duration{transport.DefaultMessageTimeout},
			MaxConnections: transport.DefaultMaxConns, MaxConnectionsPerSource: transport.DefaultMaxConnsPerSource},
		SymmetricResponses: &t,
		Sessions:           Sessions{MinSE: Duration{90 * time.Second}},
		NAT:                NAT{Keepalive: "options", KeepaliveInterval: Duration{15 * time.Second}, KeepaliveFailures: 3},
		Media:              Media{Relay: "auto", Ports: "10000-29999", Latch: "first", Inactivity: Duration{60 * time.Second}, MaxStreamsPerCall: 8, Kernel: "auto"},
		Shutdown:           Shutdown{Drain: Duration{30 * time.Second}},
		MIME:               MIME{Inbound: DefaultMIME(), Outbound: DefaultMIME()},
		ServerHeader:       "sipedge",
		Security: Security{
			Rate:              RateLimit{Requests: 100, Window: Duration{2 * time.Second}, Ban: Duration{5 * time.Minute}},
			AuthFailures:      AuthFailures{PerSource: 10, PerUser: 20, Window: Duration{time.Minute}, Ban: Duration{15 * time.Minute}},
			MaxTrackedSources: 100000,
		},
		// A pointer of its own each: decoding a key writes through it.
		TopologyHiding: TopologyHiding{Via: boolPtr(true), Contact: boolPtr(true), RecordRoute: boolPtr(true), CallID: boolPtr(true)},
	}
}

// Load reads a file over the defaults.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	var ce *Error
	if errors.As(err, &ce) {
		ce.File = path
	}
	return c, err
}

// Parse decodes YAML over the defaults and validates the result. Load
// uses it; the result and the errors are the same except that Load's
// errors name the file.
func Parse(b []byte) (*Config, error) {
	c, err := parse(b)
	var ce *Error
	if errors.As(err, &ce) && ce.Line == 0 && ce.Key == "" {
		ce.Line = syntaxErrorLine(b, err)
	}
	return c, err
}

func parse(b []byte) (*Config, error) {
	c := Default()
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(err, nil)
	}
	if len(root.Content) == 0 { // empty file: the defaults
		if err := c.validate(nil); err != nil {
			return nil, err
		}
		return c, nil
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, &Error{Line: next.Line, Msg: "a second YAML document (after ---); put every key in one document"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(err, root.Content[0])
	}
	if root.Content[0].Kind != yaml.MappingNode {
		if root.Content[0].Tag == "!!null" {
			return c, c.validate(nil) // a document that is only a comment or ~
		}
		return nil, &Error{Line: root.Content[0].Line, Msg: "the file must be a mapping of keys, e.g. \"listen: [0.0.0.0:5060]\" (see docs/CONFIG.md)"}
	}
	strict := yaml.NewDecoder(bytes.NewReader(b))
	strict.KnownFields(true)
	if err := strict.Decode(c); err != nil {
		return nil, yamlError(err, root.Content[0])
	}
	if err := c.validate(root.Content[0]); err != nil {
		return nil, err
	}
	return c, nil
}

var typeErrorRE = regexp.MustCompile("(?s)^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")

// yamlError turns the decoder's messages ("line 3: field foo not found in
// type config.Config") into ones an admin can act on: the line, the whole
// key path (found in root, which may be nil) and what to write instead.
func yamlError(err error, root *yaml.Node) *Error {
	var ce *Error
	if errors.As(err, &ce) { // from an UnmarshalYAML, which knows no key
		if ce.Key == "" {
			ce.Key, _ = keyAt(root, ce.Line, "")
		}
		return ce
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		// A syntax error: "yaml: line 3: mapping values are not allowed
		// in this context".
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		line := 0
		if _, e := fmt.Sscanf(msg, "line %d:", &line); e == nil {
			msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
		}
		return &Error{Line: line, Msg: "not valid YAML: " + msg}
	}
	msg := te.Errors[0]
	line := 0
	if strings.HasPrefix(msg, "line ") {
		fmt.Sscanf(msg, "line %d:", &line)
		if i := strings.Index(msg, ": "); i > 0 {
			msg = msg[i+2:]
		}
	}
	if strings.HasPrefix(msg, "field ") && strings.Contains(msg, " not found in type ") {
		i := strings.Index(msg, " not found in type ")
		name := strings.TrimPrefix(msg[:i], "field ")
		key := name
		if p, _ := keyAt(root, line, name); p != "" {
			key = p
		}
		return &Error{Line: line, Key: key, Msg: unknownKey(name, msg[i+len(" not found in type "):])}
	}
	if m := typeErrorRE.FindStringSubmatch(msg); m != nil {
		var want string
		switch into := m[3]; {
		case into == "int":
			want = "want a whole number, e.g. 10"
		case into == "bool" || into == "*bool":
			want = "want true or false"
		case into == "string":
			want = "want a single value, not a list or mapping"
		case into == "[]config.Route":
			want = "want a list of routes, each a mapping with name and to (see docs/CONFIG.md)"
		case strings.HasPrefix(into, "[]"):
			want = "want a list, e.g. [a, b]"
		case into == "config.Config":
			want = "the file must be a mapping of keys, e.g. \"listen: [0.0.0.0:5060]\" (see docs/CONFIG.md)"
		case strings.HasPrefix(into, "config."):
			want = "want a mapping of keys (see docs/CONFIG.md)"
		default:
			want = "want a value of type " + into
		}
		key, v := keyAt(root, line, "")
		if v != nil && v.Kind == yaml.ScalarNode {
			want = strconv.Quote(v.Value) + ": " + want // the decoder shortens it
		} else if m[2] != "" {
			want = strconv.Quote(m[2]) + ": " + want
		}
		return &Error{Line: line, Key: key, Msg: want}
	}
	key, _ := keyAt(root, line, "")
	return &Error{Line: line, Key: key, Msg: msg}
}

// syntaxErrorLine finds the line of an error the YAML parser gives
// without one ("found unexpected end of stream" for a quote never closed,
// "control characters are not allowed"): the first line from which the
// file up to there fails with the same message, else the last line.
func syntaxErrorLine(b []byte, want error) int {
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines) > 2000 { // a parse per line: keep it quick
		return len(lines)
	}
	end := 0
	for i, l := range lines {
		end += len(l)
		if _, err := parse(b[:end]); err != nil && err.Error() == want.Error() {
			return i + 1
		}
	}
	return max(len(lines), 1)
}

// keyAt finds the dotted path ("registrar.max_contacts", "routes[0].to")
// and the value of the key written on line; with name, of a key so named.
// "" and nil if none.
func keyAt(root *yaml.Node, line int, name string) (string, *yaml.Node) {
	if root == nil || line <= 0 {
		return "", nil
	}
	var found string
	var value *yaml.Node
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				path := k.Value
				if prefix != "" {
					path = prefix + "." + k.Value
				}
				if k.Line == line && (name == "" || k.Value == name) {
					found, value = path, v // the last on the line is the innermost
				}
				walk(v, path)
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				if item.Kind == yaml.ScalarNode && item.Line == line && found == "" && name == "" {
					found, value = prefix, item
				}
				walk(item, fmt.Sprintf("%s[%d]", prefix, i))
			}
		}
	}
	walk(root, "")
	return found, value
}

// hasKey reports whether the dotted key path is written in the YAML tree
// (root may be nil: no file).
func hasKey(n *yaml.Node, path string) bool {
	for _, part := range strings.Split(path, ".") {
		if n == nil || n.Kind != yaml.MappingNode {
			return false
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return false
		}
		n = next
	}
	return true
}

// lineOf finds the line of a dotted key path in the YAML tree; for a key
// not written in the file, the line of its nearest enclosing key that is
// (0 if none).
func lineOf(n *yaml.Node, path string) int {
	line := 0
	for _, part := range strings.Split(path, ".") {
		if n == nil || n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line = n.Content[i].Line
				next = n.Content[i+1]
				break
			}
		}
		n = next
	}
	return line
}

func (c *Config) validate(root *yaml.Node) error {
	bad := func(key, msg string) error { return &Error{Line: lineOf(root, key), Key: key, Msg: msg} }
	for _, l := range c.Listen {
		if _, _, err := ParseListen(l); err != nil {
			return bad("listen", err.Error())
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return bad("tls", "set both cert and key, or neither")
	}
	if err := c.TLS.validate(bad); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", fmt.Sprintf("%q: use debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return bad("log.format", fmt.Sprintf("%q: use text or json", c.Log.Format))
	}
	if m := c.Limits.MaxMessageSize; m != 0 && (m < 1024 || m > 1<<20) {
		return bad("limits.max_message_size", fmt.Sprintf("%d: use 1024 to 1048576 (0: the default, %d)", m, sip.DefaultMaxMessageSize))
	}
	if c.Limits.MaxHeaders < 0 {
		return bad("limits.max_headers", fmt.Sprintf("%d: use a positive number (0: the default, %d)", c.Limits.MaxHeaders, sip.DefaultMaxHeaders))
	}
	if c.Limits.MaxVias < 0 {
		return bad("limits.max_vias", fmt.Sprintf("%d: use a positive number (0: the default, %d)", c.Limits.MaxVias, sip.DefaultMaxVias))
	}
	if c.Limits.MaxTransactions < 1 {
		return bad("limits.max_transactions", fmt.Sprintf("%d: use a positive number (default %d)", c.Limits.MaxTransactions, txn.DefaultMaxServers))
	}
	tr := c.Transport
	idle := tr.IdleTimeout
	if idle.Duration <= 0 {
		idle.Duration = transport.DefaultIdleTimeout // what the transport makes of it
	}
	if mt := tr.MessageTimeout.Duration; mt <= 0 || mt > idle.Duration {
		return bad("transport.message_timeout", fmt.Sprintf("%s: use a positive duration no longer than idle_timeout %s (default %s)",
			tr.MessageTimeout, idle, transport.DefaultMessageTimeout))
	}
	if tr.MaxConnections < 1 {
		return bad("transport.max_connections", fmt.Sprintf("%d: use a positive number, well under the open-files limit (ulimit -n) (default %d)",
			tr.MaxConnections, transport.DefaultMaxConns))
	}
	if tr.MaxConnectionsPerSource < 1 || tr.MaxConnectionsPerSource > tr.MaxConnections {
		return bad("transport.max_connections_per_source", fmt.Sprintf("%d: use a positive number no larger than max_connections %d (default %d)",
			tr.MaxConnectionsPerSource, tr.MaxConnections, transport.DefaultMaxConnsPerSource))
	}
	for _, o := range tr.WebSocketOrigins {
		if _, err := path.Match(o, ""); err != nil || o == "" {
			return bad("transport.websocket_origins", fmt.Sprintf("%q: use a host pattern such as phone.example.com, *.example.com or https://phone.example.com", o))
		}
	}
	r := c.Registrar
	if r.MinExpires.Duration > r.MaxExpires.Duration {
		return bad("registrar.min_expires", fmt.Sprintf("%s is more than max_expires %s", r.MinExpires, r.MaxExpires))
	}
	if r.DefaultExpires.Duration < r.MinExpires.Duration || r.DefaultExpires.Duration > r.MaxExpires.Duration {
		return bad("registrar.default_expires", "must lie between min_expires and max_expires")
	}
	if r.MaxContacts < 1 {
		return bad("registrar.max_contacts", "must be at least 1")
	}
	if c.MemoryLimitMB < 0 || (c.MemoryLimitMB > 0 && c.MemoryLimitMB < 64) {
		return bad("memory_limit_mb", fmt.Sprintf("%d: use 0 (no limit) or at least 64", c.MemoryLimitMB))
	}
	for _, n := range c.TrustedNetworks {
		if _, err := ParseNetworks(n); err != nil {
			return bad("trusted_networks", err.Error())
		}
	}
	for _, l := range []struct {
		key   string
		types []string
	}{{"mime.inbound", c.MIME.Inbound}, {"mime.outbound", c.MIME.Outbound}} {
		if len(l.types) == 0 {
			return bad(l.key, "an empty list would refuse every request with a body; list the media types to allow, or write [\"*/*\"] to allow any")
		}
		for _, t := range l.types {
			if !validMediaRange(t) {
				return bad(l.key, fmt.Sprintf("%q: want a media type such as application/sdp, a whole type such as text/*, or */* (no parameters)", t))
			}
		}
	}
	for _, ch := range c.ServerHeader {
		if ch < 0x20 || ch == 0x7f {
			return bad("server_header", "control characters (a line break) are not allowed in a header value")
		}
	}
	if err := c.HEP.aliases(root, bad); err != nil {
		return err
	}
	if err := c.HEP.validate(root, bad); err != nil {
		return err
	}
	if c.Admin.Listen != "off" {
		if err := admin.Check(c.Admin.Listen, c.Admin.Token); err != nil {
			return bad("admin.listen", err.Error())
		}
	}
	if c.Store.Sync != "fsync" && c.Store.Sync != "write" {
		return bad("store.sync", fmt.Sprintf("%q: use fsync (on disk before the 200 OK) or write (in the kernel: survives a sipedge crash, not a machine crash)", c.Store.Sync))
	}
	if d := c.CallLog.Flush.Duration; d < 0 || d > time.Second {
		return bad("call_log.flush", fmt.Sprintf("%v: use a duration from 0 (each line written at once) to 1s; the default is 100ms", d))
	}
	if d := c.Store.SyncDelay.Duration; d <= 0 || d > 100*time.Millisecond {
		return bad("store.sync_delay", fmt.Sprintf("%v: use a duration from 1ms (the default) to 100ms", d))
	}
	if r := c.Store.Redis; r != nil {
		if len(r.Addrs) == 0 {
			return bad("store.redis.addrs", "the Redis server's address, e.g. [127.0.0.1:6379] (several: the Sentinels, with sentinel.master)")
		}
		if len(r.Addrs) > 1 && r.Sentinel.Master == "" {
			return bad("store.redis.addrs", "several addresses are Sentinels: name their master in store.redis.sentinel.master (a Redis Cluster is not supported; use one server, or Sentinel)")
		}
		for _, a := range r.Addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return bad("store.redis.addrs", fmt.Sprintf("%q: want host:port, e.g. 127.0.0.1:6379", a))
			}
		}
		if r.Node != "" {
			if ap, err := netip.ParseAddrPort(r.Node); err != nil || ap.Addr().IsUnspecified() {
				return bad("store.redis.node", fmt.Sprintf("%q: want the ip:port the other instances reach this one at, e.g. 10.0.0.2:5060", r.Node))
			}
		}
		if r.WaitReplicas < 0 || r.DB < 0 {
			return bad("store.redis", "db and wait_replicas cannot be negative")
		}
	}
	if err := c.validateAuth(bad); err != nil {
		return err
	}
	for i, rt := range c.Routes {
		key := fmt.Sprintf("routes[%d]", i)
		if rt.Name == "" {
			return &Error{Line: lineOf(root, "routes"), Key: key + ".name", Msg: "every route needs a name (it appears in logs)"}
		}
		if _, _, named := proxy.NamedDestination(rt.To); !named && !isSIPURI(rt.To) {
			return &Error{Line: lineOf(root, "routes"), Key: key + ".to", Msg: fmt.Sprintf("%q: needs a SIP URI, e.g. sip:gw.example.net:5060, or a named destination such as pool:NAME", rt.To)}
		}
	}
	if err := c.validateTopologyHiding(root); err != nil {
		return err
	}
	if err := c.validateTrunks(root); err != nil {
		return err
	}
	if err := c.validateDialPlan(root); err != nil {
		return err
	}
	if err := c.validateSurvival(root); err != nil {
		return err
	}
	if i := c.Sessions.Interval; i.Duration != 0 && i.Duration < c.Sessions.MinSE.Duration {
		return bad("sessions.interval", fmt.Sprintf("%s is below min_se %s", i, c.Sessions.MinSE))
	}
	if d := c.Shutdown.Drain.Duration; d > 24*time.Hour {
		return bad("shutdown.drain", fmt.Sprintf("%s: at most 24h (calls in progress get that long to end)", c.Shutdown.Drain))
	}
	if c.Sessions.MinSE.Duration < 90*time.Second {
		return bad("sessions.min_se", fmt.Sprintf("%s: RFC 4028 §5 requires at least 90s", c.Sessions.MinSE))
	}
	switch c.NAT.Keepalive {
	case "options", "crlf", "none":
	default:
		return bad("nat.keepalive", fmt.Sprintf("%q: use options, crlf or none", c.NAT.Keepalive))
	}
	if c.NAT.Keepalive != "none" && (c.NAT.KeepaliveInterval.Duration < time.Second || c.NAT.KeepaliveFailures < 1) {
		return bad("nat", "keepalive_interval must be at least 1s and keepalive_failures at least 1 (or keepalive: none)")
	}
	switch c.Media.Relay {
	case "auto", "always", "never":
	default:
		return bad("media.relay", fmt.Sprintf("%q: use auto, always or never", c.Media.Relay))
	}
	if _, _, err := c.Media.PortRange(); err != nil {
		return bad("media.ports", err.Error())
	}
	switch c.Media.Kernel {
	case "auto", "on", "off":
	default:
		return bad("media.kernel", fmt.Sprintf("%q: use auto, on or off", c.Media.Kernel))
	}
	switch c.Media.Latch {
	case "first", "ssrc":
	default:
		return bad("media.latch", fmt.Sprintf("%q: use first or ssrc", c.Media.Latch))
	}
	if f := strings.Fields(c.Media.Firewall); c.Media.Firewall != "" && (len(f) != 3 || f[0] != "inet" && f[0] != "ip" && f[0] != "ip6") {
		return bad("media.firewall", fmt.Sprintf("%q: want \"family table chain\" with family inet, ip or ip6, e.g. \"inet filter input\"", c.Media.Firewall))
	}
	if c.Media.MaxCalls < 0 || c.Media.MaxStreamsPerCall < 1 || c.Media.MaxCallsPerUser < 0 {
		return bad("media", "max_calls and max_calls_per_user must be 0 or more and max_streams_per_call at least 1")
	}
	for _, s := range c.DNS.Servers {
		if _, err := netip.ParseAddrPort(s); err != nil {
			return bad("dns.servers", fmt.Sprintf("%q: want ip:port, e.g. 127.0.0.1:53", s))
		}
	}
	if c.OutboundProxy != "" && !isSIPURI(c.OutboundProxy) {
		return bad("outbound_proxy", fmt.Sprintf("%q: needs a SIP URI, e.g. sip:proxy.example.net", c.OutboundProxy))
	}
	if err := c.validatePools(root); err != nil {
		return err
	}
	return c.Security.validate(bad)
}

// Bounds of the security keys: the counts are compared in integer
// arithmetic (count × window in nanoseconds), which these keep far from
// overflowing, and a ban longer than a month is a firewall rule's job.
const (
	maxSecurityCount  = 1000000
	maxSecurityWindow = time.Hour
	maxSecurityBan    = 30 * 24 * time.Hour
)

func (s *Security) validate(bad func(key, msg string) error) error {
	count := func(key string, n int) error {
		if n < 0 || n > maxSecurityCount {
			return bad(key, fmt.Sprintf("%d: use 0 (off) to %d", n, maxSecurityCount))
		}
		return nil
	}
	span := func(key string, d Duration, lo, hi time.Duration) error {
		if d.Duration < lo || d.Duration > hi {
			return bad(key, fmt.Sprintf("%s: use %s to %s", d, Duration{lo}, Duration{hi}))
		}
		return nil
	}
	for _, err := range []error{
		count("security.rate.requests", s.Rate.Requests),
		span("security.rate.window", s.Rate.Window, 100*time.Millisecond, maxSecurityWindow),
		span("security.rate.ban", s.Rate.Ban, time.Second, maxSecurityBan),
		count("security.auth_failures.per_source", s.AuthFailures.PerSource),
		count("security.auth_failures.per_user", s.AuthFailures.PerUser),
		span("security.auth_failures.window", s.AuthFailures.Window, time.Second, maxSecurityWindow),
		span("security.auth_failures.ban", s.AuthFailures.Ban, time.Second, maxSecurityBan),
	} {
		if err != nil {
			return err
		}
	}
	if m := s.MaxTrackedSources; m < 100 || m > 10000000 {
		return bad("security.max_tracked_sources", fmt.Sprintf("%d: use 100 to 10000000 (about 200 bytes each)", m))
	}
	for _, v := range s.LiftBans {
		if _, err := parseLift(v); err != nil {
			return bad("security.lift_bans", err.Error())
		}
	}
	return nil
}

// isSIPURI reports whether v is a sip: or sips: URI the proxy can route to.
func isSIPURI(v string) bool {
	u, err := sip.ParseURI([]byte(v))
	return err == nil && u.IsSIP()
}

// ParseListen parses "[udp:|tcp:|tls:]ip:port" into protocols and address.
// Without a protocol it means UDP and TCP.
func ParseListen(v string) (protos []string, addr string, err error) {
	addr = v
	if i := strings.Index(v, ":"); i > 0 && !strings.HasPrefix(v, "[") {
		switch p := strings.ToLower(v[:i]); p {
		case "udp", "tcp", "tls", "ws", "wss":
			protos, addr = []string{p}, v[i+1:]
		}
	}
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return nil, "", fmt.Errorf("%q: want [udp:|tcp:|tls:|ws:|wss:]ip:port, e.g. udp:0.0.0.0:5060, tcp:[::1]:5060 or wss:0.0.0.0:8443", v)
	}
	if protos == nil {
		protos = []string{"udp", "tcp"}
	}
	return protos, addr, nil
}

// validMediaRange checks an allow-list entry: type "/" subtype, both
// tokens (RFC 3261 §25.1), where the subtype may be "*" and the type "*"
// only in "*/*".
func validMediaRange(s string) bool {
	typ, sub, ok := strings.Cut(s, "/")
	if !ok || !isToken(typ) || !isToken(sub) {
		return false
	}
	if typ == "*" {
		return sub == "*"
	}
	return !strings.Contains(typ, "*") && (sub == "*" || !strings.Contains(sub, "*"))
}

// isToken: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+"
// / "`" / "'" / "~").
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}

// Trusted returns the parsed TrustedNetworks. It is never nil: an empty
// list trusts no source (proxy.Policy reads nil as "every source").
func (c *Config) Trusted() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.TrustedNetworks))
	for _, n := range c.TrustedNetworks {
		p, _ := ParseNetworks(n)
		out = append(out, p...)
	}
	return out
}

// ParseNetworks expands "loopback", "private" (nat.PrivatePrefixes) or a
// CIDR prefix.
func ParseNetworks(v string) ([]netip.Prefix, error) {
	switch v {
	case "loopback":
		return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}, nil
	case "private":
		return nat.PrivatePrefixes(), nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return nil, fmt.Errorf("%q: want loopback, private or a prefix such as 192.0.2.0/24", v)
	}
	return []netip.Prefix{p.Masked()}, nil
}

// AuthRealm is the realm in force: auth.realm, else the first domain.
func (c *Config) AuthRealm() string {
	if c.Auth.Realm != "" || len(c.Domains) == 0 {
		return c.Auth.Realm
	}
	return c.Domains[0]
}

// authAlgorithms are the names auth.algorithms accepts.
var authAlgorithms = []string{"MD5", "SHA-256", "SHA-512-256"}

func (c *Config) validateAuth(bad func(key, msg string) error) error {
	a := &c.Auth
	if a.UsersFile == "" {
		if a.AllowUnauthenticatedToLocal || len(a.Identities) > 0 {
			return bad("auth.users_file", "auth is off without a users file; create one with `sipedge users add FILE USER --realm REALM` and name it here")
		}
		return nil
	}
	if c.AuthRealm() == "" {
		return bad("auth.realm", "auth.users_file is set but no realm: write auth.realm (usually your SIP domain) or list domains")
	}
	if strings.ContainsAny(c.AuthRealm(), "\"\\\r\n") {
		return bad("auth.realm", "must not contain quotes, backslashes or line breaks")
	}
	for _, n := range a.Algorithms {
		found := false
		for _, ok := range authAlgorithms {
			found = found || strings.EqualFold(n, ok)
		}
		if !found {
			return bad("auth.algorithms", fmt.Sprintf("%q: use MD5, SHA-256 or SHA-512-256", n))
		}
	}
	return nil
}

// validateTopologyHiding checks topology_hiding.peers: each entry a CIDR
// prefix or the name of a route whose next hop is an IP address. Stateless
// routes cannot be combined with it: sipedge keeps no state for their
// responses, so the Vias, Call-ID and Contact it hid could not be put back
// (RFC 3261 §16.11); a stateless route named in peers, or one whose next
// hop is in a peer network or is a host name (its addresses are not known
// until it is used), is refused.
func (c *Config) validateTopologyHiding(root *yaml.Node) error {
	th := &c.TopologyHiding
	if !th.On() {
		return nil
	}
	bad := func(msg string) error {
		return &Error{Line: lineOf(root, "topology_hiding"), Key: "topology_hiding.peers", Msg: msg}
	}
	nets, err := c.PeerNetworks()
	if err != nil {
		return bad(err.Error())
	}
	for i, rt := range c.Routes {
		if !rt.Stateless {
			continue
		}
		a, ok := routeAddr(rt.To)
		if !ok {
			return bad(fmt.Sprintf("routes[%d] (%q) is stateless and goes to a host name: topology hiding needs stateful routes, or a stateless route to an IP address outside the peers", i, rt.Name))
		}
		for _, p := range nets {
			if p.Contains(a) {
				return bad(fmt.Sprintf("routes[%d] (%q) is stateless and leads to peer network %s: hidden headers cannot be restored without state; remove stateless: true from it", i, rt.Name, p))
			}
		}
	}
	return nil
}

// PeerNetworks returns topology_hiding.peers as prefixes: a route name
// stands for its next hop's address.
func (c *Config) PeerNetworks() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range c.TopologyHiding.Peers {
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(v); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		found := false
		for _, rt := range c.Routes {
			if rt.Name != v {
				continue
			}
			found = true
			a, ok := routeAddr(rt.To)
			if !ok {
				return nil, fmt.Errorf("%q: route %q goes to a host name; list its addresses as prefixes instead", v, rt.Name)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
		if !found {
			return nil, fmt.Errorf("%q: neither a prefix such as 192.0.2.0/24 nor the name of a route", v)
		}
	}
	return out, nil
}

// routeAddr is the IP address of a route's next hop URI, when it names one
// (maddr wins, as in RFC 3263 §4.1).
func routeAddr(to string) (netip.Addr, bool) {
	u, err := sip.ParseURI([]byte(to))
	if err != nil {
		return netip.Addr{}, false
	}
	host := u.Host
	if m, ok := u.Param("maddr"); ok && len(m) > 0 {
		host = m
	}
	return sip.ParseIP(host)
}

func boolPtr(v bool) *bool { return &v }

// Trunk is one SIP provider sipedge registers itself to (trunks).
type Trunk struct {
	// Name makes the trunk the destination trunk:NAME of routes.
	Name string `yaml:"name"`
	// Registrar is the provider's registrar (SIP URI): the REGISTER's
	// Request-URI, and where it and calls go unless proxy is set.
	Registrar string `yaml:"registrar"`
	// Proxy is the provider's outbound proxy (SIP URI); empty: registrar.
	Proxy string `yaml:"proxy"`
	// Domain is the host of the trunk's address of record and of the
	// Request-URI of calls to the provider; empty: the registrar's.
	Domain   string `yaml:"domain"`
	Username string `yaml:"username"`
	// Password, or PasswordFile: a file holding it (one line), so the
	// configuration can be shown without it.
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// Realm: only challenges of this realm are answered; empty: any.
	Realm string `yaml:"realm"`
	// Expires is the registration interval asked for (default 600s).
	Expires Duration `yaml:"expires"`
	// ContactUser is the user part of the contact registered (default:
	// username); the provider's calls arrive with it.
	ContactUser string `yaml:"contact_user"`
	// Transport to the provider when the registrar URI names none: udp,
	// tcp or tls.
	Transport string `yaml:"transport"`
	// Register: false for a provider that knows sipedge by its address.
	Register *bool `yaml:"register"`
	// Inbound is where calls arriving on the contact go (a SIP URI,
	// routed like a Request-URI); "{to}" stands for the user of their To
	// URI (the number dialled at the provider).
	Inbound string `yaml:"inbound"`
	// RetryMin and RetryMax bound the delay after a failed registration
	// (default 5s, doubling up to 5m).
	RetryMin Duration `yaml:"retry_min"`
	RetryMax Duration `yaml:"retry_max"`
}

// RegistrarURI is the registrar with transport applied: the URI the
// REGISTERs and calls go to.
func (t *Trunk) RegistrarURI() string {
	if t.Transport == "" || strings.Contains(strings.ToLower(t.Registrar), ";transport=") {
		return t.Registrar
	}
	return t.Registrar + ";transport=" + strings.ToLower(t.Transport)
}

// validateTrunks checks trunks: each error names trunks[i].key, the line
// of the trunk and what to write instead.
func (c *Config) validateTrunks(root *yaml.Node) error {
	line := func(i int) int {
		n := root
		if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
			n = n.Content[0]
		}
		if n != nil && n.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == "trunks" && n.Content[j+1].Kind == yaml.SequenceNode && i < len(n.Content[j+1].Content) {
					return n.Content[j+1].Content[i].Line
				}
			}
		}
		return lineOf(root, "trunks")
	}
	names, users := map[string]bool{}, map[string]string{}
	for i := range c.Trunks {
		t := &c.Trunks[i]
		bad := func(key, msg string) error {
			return &Error{Line: line(i), Key: fmt.Sprintf("trunks[%d].%s", i, key), Msg: msg}
		}
		if _, _, ok := proxy.NamedDestination("trunk:" + t.Name); !ok {
			return bad("name", fmt.Sprintf("%q: a name of letters, digits, '-', '_' and '.' (routes send to it as trunk:NAME)", t.Name))
		}
		if names[t.Name] {
			return bad("name", fmt.Sprintf("%q is the name of an earlier trunk too", t.Name))
		}
		names[t.Name] = true
		switch strings.ToLower(t.Transport) {
		case "", "udp", "tcp", "tls":
		default:
			return bad("transport", fmt.Sprintf("%q: use udp, tcp or tls", t.Transport))
		}
		if !isSIPURI(t.RegistrarURI()) {
			return bad("registrar", fmt.Sprintf("%q: needs a SIP URI, e.g. sip:sip.provider.example", t.Registrar))
		}
		if t.Proxy != "" && !isSIPURI(t.Proxy) {
			return bad("proxy", fmt.Sprintf("%q: needs a SIP URI, e.g. sip:proxy.provider.example;transport=tcp", t.Proxy))
		}
		if t.Username == "" || strings.ContainsAny(t.Username, "@:;<>\" \t\r\n") {
			return bad("username", fmt.Sprintf("%q: the user name the provider gave (no '@', ':', ';', blanks)", t.Username))
		}
		if (t.Password == "") == (t.PasswordFile == "") {
			return bad("password", "write one of password and password_file (a file holding the password)")
		}
		if t.ContactUser != "" && strings.ContainsAny(t.ContactUser, "@:;<>\" \t\r\n") {
			return bad("contact_user", fmt.Sprintf("%q: letters, digits and '-', '_', '.', '+'", t.ContactUser))
		}
		cu := t.ContactUser
		if cu == "" {
			cu = t.Username
		}
		if o, dup := users[cu]; dup {
			return bad("contact_user", fmt.Sprintf("%q is registered by trunk %s too: give this trunk a contact_user of its own", cu, o))
		}
		users[cu] = t.Name
		if d := t.Expires.Duration; d != 0 && (d < time.Second || d > 24*time.Hour) {
			return bad("expires", fmt.Sprintf("%s: from 1s to 24h (default 600s)", t.Expires))
		}
		if t.RetryMin.Duration < 0 || t.RetryMax.Duration < 0 || t.RetryMax.Duration != 0 && t.RetryMax.Duration < t.RetryMin.Duration {
			return bad("retry_max", "retry_min and retry_max are durations, retry_max not below retry_min (defaults 5s and 5m)")
		}
		if t.Inbound != "" && !isSIPURI(strings.ReplaceAll(t.Inbound, "{to}", "x")) {
			return bad("inbound", fmt.Sprintf("%q: needs a SIP URI, e.g. sip:alice@example.com or sip:{to}@pbx.example.com", t.Inbound))
		}
	}
	return nil
}

// Pool is a named group of upstreams (features/pool). Zero values take
// the defaults of docs/CONFIG.md.
type Pool struct {
	Name string `yaml:"name"`
	// Algorithm: weighted (default), hash (by Call-ID), priority or
	// least-calls.
	Algorithm string       `yaml:"algorithm"`
	Targets   []PoolTarget `yaml:"targets"`
	Probe     PoolProbe    `yaml:"probe"`
	// AnswerTimeout is how long a target has to answer a request (a 100
	// Trying will do) before the next target is tried. Default 2s.
	AnswerTimeout Duration `yaml:"answer_timeout"`
}

// PoolTarget is one upstream of a pool.
type PoolTarget struct {
	URI      string `yaml:"uri"`      // sip:IP[:port][;transport=tcp|tls]
	Weight   int    `yaml:"weight"`   // share of new calls; default 1
	Priority int    `yaml:"priority"` // algorithm priority: lower first
}

// PoolProbe configures the OPTIONS health probes of a pool's targets.
type PoolProbe struct {
	Interval  Duration `yaml:"interval"`   // default 10s
	Timeout   Duration `yaml:"timeout"`    // default 2s (at most interval)
	DownAfter int      `yaml:"down_after"` // failures in a row; default 3
	UpAfter   int      `yaml:"up_after"`   // answered probes in a row; default 2
}

var poolNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// validatePools checks the pools and the routes that name them.
func (c *Config) validatePools(root *yaml.Node) error {
	names := map[string]bool{}
	for i, p := range c.Pools {
		key := fmt.Sprintf("pools[%d]", i)
		bad := func(k, msg string) error {
			return &Error{Line: seqItemLine(root, "pools", i, k), Key: key + "." + k, Msg: msg}
		}
		if !poolNameRE.MatchString(p.Name) {
			return bad("name", fmt.Sprintf("%q: every pool needs a name of letters, digits, '.', '-' and '_' (routes send to it as pool:NAME)", p.Name))
		}
		if names[p.Name] {
			return bad("name", fmt.Sprintf("%q: two pools have this name; rename one", p.Name))
		}
		names[p.Name] = true
		switch p.Algorithm {
		case "", "weighted", "hash", "priority", "least-calls":
		default:
			return bad("algorithm", fmt.Sprintf("%q: use weighted (the default), hash, priority or least-calls", p.Algorithm))
		}
		if len(p.Targets) == 0 {
			return bad("targets", "a pool needs at least one target, e.g. targets: [{uri: \"sip:192.0.2.10:5060\"}]")
		}
		seen := map[string]bool{}
		for j, t := range p.Targets {
			tk := fmt.Sprintf("targets[%d]", j)
			if a, ok := routeAddr(t.URI); !ok || !isSIPURI(t.URI) || !a.IsValid() || strings.Contains(t.URI, "@") {
				return bad(tk+".uri", fmt.Sprintf("%q: want sip:IP[:port], e.g. sip:192.0.2.10:5060 or sip:[2001:db8::10]:5060;transport=tcp (host names are not resolved for pools)", t.URI))
			}
			if seen[t.URI] {
				return bad(tk+".uri", fmt.Sprintf("%q is listed twice in this pool", t.URI))
			}
			seen[t.URI] = true
			if t.Weight < 0 || t.Weight > 1000 {
				return bad(tk+".weight", fmt.Sprintf("%d: use 1 to 1000 (0 or none: 1)", t.Weight))
			}
			if t.Priority < 0 {
				return bad(tk+".priority", fmt.Sprintf("%d: use 0 or more (lower is tried first)", t.Priority))
			}
		}
		pr := p.Probe
		interval := pr.Interval.Duration
		if interval == 0 {
			interval = 10 * time.Second
		}
		if interval < 100*time.Millisecond || interval > time.Hour {
			return bad("probe.interval", fmt.Sprintf("%s: use 100ms to 1h (default 10s)", pr.Interval))
		}
		if pr.Timeout.Duration > interval {
			return bad("probe.timeout", fmt.Sprintf("%s is longer than the interval %s; use at most the interval (default 2s)", pr.Timeout, Duration{interval}))
		}
		if pr.DownAfter < 0 || pr.DownAfter > 100 {
			return bad("probe.down_after", fmt.Sprintf("%d: use 1 to 100 failures in a row (default 3)", pr.DownAfter))
		}
		if pr.UpAfter < 0 || pr.UpAfter > 100 {
			return bad("probe.up_after", fmt.Sprintf("%d: use 1 to 100 answered probes in a row (default 2)", pr.UpAfter))
		}
		if d := p.AnswerTimeout.Duration; d != 0 && (d < 50*time.Millisecond || d > 32*time.Second) {
			return bad("answer_timeout", fmt.Sprintf("%s: use 50ms to 32s (default 2s)", p.AnswerTimeout))
		}
	}
	for i, rt := range c.Routes {
		if kind, name, ok := proxy.NamedDestination(rt.To); ok && kind == "pool" && !names[name] {
			return &Error{Line: lineOf(root, "routes"), Key: fmt.Sprintf("routes[%d].to", i),
				Msg: fmt.Sprintf("%q: no pool named %s; add it under pools, or correct the name", rt.To, name)}
		}
	}
	return nil
}

// validateDialPlan checks the dial_plan rules with the feature's own
// compiler (regular expressions, header names and the headers the core
// owns, codecs); the error names the rule's key and its line. Named
// destinations are checked when sipedge starts, against the features
// that own them.
func (c *Config) validateDialPlan(root *yaml.Node) error {
	err := dialplan.Check(c.DialPlan)
	var re *dialplan.RuleError
	if !errors.As(err, &re) {
		return err
	}
	key := fmt.Sprintf("dial_plan[%d].%s", re.Index, re.Key)
	return &Error{Line: ruleLine(root, re.Index, re.Key), Key: key, Msg: re.Msg}
}

// ruleLine is the line of key ("headers.set[1]") in the i-th dial_plan
// rule: of the list item when it names one, else of the nearest key
// written.
func ruleLine(root *yaml.Node, i int, key string) int {
	line := lineOf(root, "dial_plan")
	var n *yaml.Node
	if root != nil && root.Kind == yaml.MappingNode {
		for k := 0; k+1 < len(root.Content); k += 2 {
			if root.Content[k].Value == "dial_plan" {
				n = root.Content[k+1]
			}
		}
	}
	if n == nil || n.Kind != yaml.SequenceNode || i >= len(n.Content) {
		return line
	}
	n = n.Content[i]
	line = n.Line
	for _, part := range strings.Split(key, ".") {
		name, idx, hasIdx := strings.Cut(strings.TrimSuffix(part, "]"), "[")
		if n == nil || n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for k := 0; k+1 < len(n.Content); k += 2 {
			if n.Content[k].Value == name {
				line, next = n.Content[k].Line, n.Content[k+1]
			}
		}
		n = next
		if hasIdx && n != nil && n.Kind == yaml.SequenceNode {
			j, err := strconv.Atoi(idx)
			if err == nil && j < len(n.Content) {
				n = n.Content[j]
				line = n.Line
			}
		}
	}
	return line
}

// seqItemLine is the line of key (a dotted path) in the i-th item of the
// sequence under top-level key seq: of the item itself when key is not
// written there, of seq when the item is not found.
func seqItemLine(root *yaml.Node, seq string, i int, key string) int {
	line := lineOf(root, seq)
	if root == nil || root.Kind != yaml.MappingNode {
		return line
	}
	for k := 0; k+1 < len(root.Content); k += 2 {
		if root.Content[k].Value != seq {
			continue
		}
		s := root.Content[k+1]
		if s.Kind != yaml.SequenceNode || i >= len(s.Content) {
			return line
		}
		item := s.Content[i]
		n, l := item, item.Line
		for _, part := range strings.Split(key, ".") {
			name, idx := part, -1
			if b := strings.IndexByte(part, '['); b > 0 && strings.HasSuffix(part, "]") {
				name = part[:b]
				idx, _ = strconv.Atoi(part[b+1 : len(part)-1])
			}
			var next *yaml.Node
			if n.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(n.Content); j += 2 {
					if n.Content[j].Value == name {
						l, next = n.Content[j].Line, n.Content[j+1]
					}
				}
			}
			if next != nil && idx >= 0 {
				if next.Kind != yaml.SequenceNode || idx >= len(next.Content) {
					return l
				}
				next = next.Content[idx]
				l = next.Line
			}
			if next == nil {
				return l
			}
			n = next
		}
		return l
	}
	return line
}

// Survival is VoIP survival in the gateway deployment: the upstream's
// health is probed; while it is down, sipedge answers the phones'
// REGISTERs itself and routes their calls (features/gateway).
type Survival struct {
	Enabled bool `yaml:"enabled"`
	// Upstream is the provider's registrar or proxy the phones register
	// to: sip:IP[:port][;transport=tcp|tls], probed with OPTIONS.
	Upstream string `yaml:"upstream"`
	// UpstreamDomains are the Request-URI hosts the upstream serves
	// (default: the upstream's host).
	UpstreamDomains []string  `yaml:"upstream_domains"`
	Probe           PoolProbe `yaml:"probe"`
	// RegisterExpires is the expiry given to phones in survival mode
	// (default 60s).
	RegisterExpires Duration `yaml:"register_expires"`
	// Fallback is where calls for users without a binding go in
	// survival mode: a SIP URI or pool:NAME / trunk:NAME ("": 480).
	Fallback string `yaml:"fallback"`
}

// validateSurvival checks the survival section.
func (c *Config) validateSurvival(root *yaml.Node) error {
	s := c.Survival
	bad := func(k, msg string) error {
		return &Error{Line: lineOf(root, "survival."+k), Key: "survival." + k, Msg: msg}
	}
	if !s.Enabled {
		return nil
	}
	if a, ok := routeAddr(s.Upstream); !ok || !isSIPURI(s.Upstream) || !a.IsValid() || strings.Contains(s.Upstream, "@") {
		return bad("upstream", fmt.Sprintf("%q: want the provider's registrar as sip:IP[:port], e.g. sip:203.0.113.10:5060 (host names are not resolved for probes)", s.Upstream))
	}
	for i, d := range s.UpstreamDomains {
		if d == "" || strings.ContainsAny(d, " :;@<>") {
			return bad("upstream_domains", fmt.Sprintf("upstream_domains[%d] %q: want a host name or address, e.g. sip.provider.example", i, d))
		}
	}
	pr := s.Probe
	interval := pr.Interval.Duration
	if interval == 0 {
		interval = 10 * time.Second
	}
	if interval < 100*time.Millisecond || interval > time.Hour {
		return bad("probe.interval", fmt.Sprintf("%s: use 100ms to 1h (default 10s)", pr.Interval))
	}
	if pr.Timeout.Duration < 0 || pr.Timeout.Duration > interval {
		return bad("probe.timeout", fmt.Sprintf("%s is longer than the interval %s; use at most the interval (default 2s)", pr.Timeout, Duration{interval}))
	}
	if pr.DownAfter < 0 || pr.DownAfter > 100 {
		return bad("probe.down_after", fmt.Sprintf("%d: use 1 to 100 failures in a row (default 3)", pr.DownAfter))
	}
	if pr.UpAfter < 0 || pr.UpAfter > 100 {
		return bad("probe.up_after", fmt.Sprintf("%d: use 1 to 100 answered probes in a row (default 2)", pr.UpAfter))
	}
	if d := s.RegisterExpires.Duration; d != 0 && (d < 5*time.Second || d > time.Hour) {
		return bad("register_expires", fmt.Sprintf("%s: use 5s to 1h (default 60s); short brings phones back to the provider soon", s.RegisterExpires))
	}
	if s.Fallback != "" {
		kind, name, named := proxy.NamedDestination(s.Fallback)
		if !named && !isSIPURI(s.Fallback) {
			return bad("fallback", fmt.Sprintf("%q: needs a SIP URI, e.g. sip:10.0.0.5:5060 (a PSTN gateway), or a named destination such as pool:NAME or trunk:NAME", s.Fallback))
		}
		known := false
		for _, p := range c.Pools {
			known = known || kind == "pool" && p.Name == name
		}
		for _, t := range c.Trunks {
			known = known || kind == "trunk" && t.Name == name
		}
		if named && (kind == "pool" || kind == "trunk") && !known {
			return bad("fallback", fmt.Sprintf("%q: no %s named %s; add it under %ss, or correct the name", s.Fallback, kind, name, kind))
		}
	}
	return nil
}
