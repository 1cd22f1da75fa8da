// Package admin is sipedge's operations HTTP server: health, the bans the
// guard holds (listed, and lifted with DELETE), registrations, calls with
// their SIP messages, and a web page showing them, behind a bearer token
// whenever it listens anywhere but loopback. It is built on net/http and
// knows the rest of sipedge only through the small interfaces below,
// which cmd/sipedge adapts (and the message capture's types, whose
// ladder and pcap writers it serves).
//
// Routes (JSON unless said, documented in docs/API.md):
//
//	GET    /                                 the web page (index.html, app.js, style.css; no token needed)
//	GET    /healthz                          {"status":"ok"|"draining", ...}
//	GET    /metrics                          Prometheus text exposition
//	GET    /api/v1/registrations             the registrar's bindings (?aor=, ?limit=)
//	GET    /api/v1/calls                     calls in progress and the last ended
//	GET    /api/v1/calls/{call-id}           one call and its SIP messages
//	GET    /api/v1/calls/{call-id}/ladder.txt  its messages as a text ladder
//	GET    /api/v1/calls/{call-id}/pcap      its messages as a pcap file
//	GET    /api/v1/events                    server-sent events: the call list when it changes
//	GET    /api/v1/connections               open TCP/TLS/WS/WSS connections
//	GET    /api/v1/pools                     pools of upstreams and their targets' health
//	GET    /api/v1/survival                  VoIP survival: normal or survival mode, since when, why
//	GET    /api/v1/bans                      the sources banned now
//	DELETE /api/v1/bans/{source}             lift the ban of an address or a prefix
//	GET    /api/v1/trunks                    the providers sipedge registers to (state, last error, next attempt)
package admin

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/capture"
)

// Ban is one banned source as the API shows it.
type Ban struct {
	Source  string    `json:"source"`
	Reason  string    `json:"reason"` // "rate" or "auth-failures"
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`
	Dropped uint64    `json:"dropped"` // requests dropped during this ban
}

// Bans is what the API reads and changes of the guard.
type Bans interface {
	List() []Ban
	Lift(p netip.Prefix) int
}

// Registration is one binding as the API shows it.
type Registration struct {
	AOR       string  `json:"aor"`
	Contact   string  `json:"contact"`
	Source    string  `json:"source"`     // where the REGISTER came from
	Transport string  `json:"transport"`  // UDP, TCP, TLS, WS, WSS
	NAT       bool    `json:"nat"`        // registered from behind a NAT
	ExpiresIn int64   `json:"expires_in"` // seconds
	UserAgent string  `json:"user_agent,omitempty"`
	Instance  string  `json:"instance,omitempty"` // +sip.instance (RFC 5626)
	RegID     int     `json:"reg_id,omitempty"`
	Q         float64 `json:"q"`
}

// Registrations is what the API reads of the registrar: the bindings whose
// AoR contains filter (all when empty), at most limit of them, and how
// many match in all.
type Registrations interface {
	Registrations(filter string, limit int) (list []Registration, total int)
}

// Calls is what the API reads of the call log: the calls in progress and
// the last that ended, most recent first, at most limit of each, each a
// JSON object (features/calllog.Record's JSON, made once after the call
// ended: the lists are joined as they are, not encoded again); and one
// call by its Call-ID, as a JSON-encodable record.
type Calls interface {
	// CallsSince is for a reader that has the calls that ended before
	// mark (next of its last read, 0 at first) and the calls in progress
	// as they were at since (seq of its last read, 0 at first): the
	// calls in progress that started or were answered after since, and
	// those that ended after mark; or, with full, the whole list of
	// ended calls (features/calllog.Feature.CallsSince). Mark and since 0
	// read both whole lists.
	CallsSince(limit int, mark, since uint64) (active, ended [][]byte, next, seq uint64, full bool, err error)
	Call(callID string) (record any, ok bool)
}

// Messages is what the API reads of the message capture
// (capture.Capture): a call's SIP messages, and a version that changes
// whenever any call has a new message (what the events stream watches).
type Messages interface {
	Messages(callID string) (list []capture.Message, dropped int, ok bool)
	Version() uint64
}

// Connection is one open TCP/TLS connection as the API shows it.
type Connection struct {
	ID        uint64     `json:"id"`
	Transport string     `json:"transport"`
	Local     string     `json:"local"`
	Remote    string     `json:"remote"`
	Inbound   bool       `json:"inbound"`              // the peer opened it
	Name      string     `json:"tls_name,omitempty"`   // the name a dialed TLS connection was verified for
	Usable    bool       `json:"usable"`               // requests can be sent on it (TLS: handshake done)
	LastWrite *time.Time `json:"last_write,omitempty"` // when sipedge last sent on it
}

// Connections is what the API reads of the transport.
type Connections interface {
	Connections(limit int) (list []Connection, total int)
}

// Health reports what /healthz shows.
type Health interface {
	Draining() bool
}

// Config is the server's configuration.
type Config struct {
	// Listen is host:port; empty: no server.
	Listen string
	// Token is required as "Authorization: Bearer TOKEN" on every request
	// when set; New refuses an address that is not loopback without one.
	Token  string
	Logger *slog.Logger
	// Metrics serves GET /metrics (the Prometheus exposition); nil: none.
	Metrics http.Handler
	// Messages are the calls' SIP messages; nil: calls are shown
	// without them.
	Messages Messages
	// Trunks are the providers sipedge registers to; nil: none.
	Trunks Trunks
	// Pools are the pools of upstreams; nil: none.
	Pools Pools
	// Survival is the state of VoIP survival; nil: not shown.
	Survival Survival
}

// Survival is what the API reads of VoIP survival: a JSON-encodable
// state (features/gateway.SurvivalState).
type Survival interface {
	View() any
}

// Pools is what the API reads of the pools of upstreams: a
// JSON-encodable list (features/pool.PoolView).
type Pools interface {
	View() any
}

// Server is the operations HTTP server.
type Server struct {
	cfg    Config
	token  atomic.Pointer[string]
	bans   Bans
	health Health
	regs   Registrations
	calls  Calls
	conns  Connections
	msgs   Messages
	start  time.Time
	ln     net.Listener
	srv    *http.Server
	log    *slog.Logger
	// streams counts the event streams open; quit ends them at Close.
	streams  atomic.Int32
	quit     chan struct{}
	quitOnce sync.Once
}

// ErrTokenRequired: the address is not loopback and no token was given.
var ErrTokenRequired = errors.New("admin.token is required when admin.listen is not a loopback address (anyone who reaches it could lift bans)")

// New checks cfg and binds the listener (so a port in use is an error at
// start, not later); Serve serves it. Any of the interfaces may be nil.
func New(cfg Config, bans Bans, health Health, regs Registrations, calls Calls, conns Connections) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := Check(cfg.Listen, cfg.Token); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %s: %v", cfg.Listen, err)
	}
	s := &Server{cfg: cfg, bans: bans, health: health, regs: regs, calls: calls, conns: conns, msgs: cfg.Messages,
		start: time.Now(), ln: ln, log: cfg.Logger, quit: make(chan struct{})}
	s.SetToken(cfg.Token)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /api/v1/bans", s.listBans)
	mux.HandleFunc("GET /api/v1/registrations", s.listRegistrations)
	mux.HandleFunc("GET /api/v1/calls", s.listCalls)
	mux.HandleFunc("GET /api/v1/calls/{id}", s.callDetail)
	mux.HandleFunc("GET /api/v1/calls/{id}/ladder.txt", s.callLadder)
	mux.HandleFunc("GET /api/v1/calls/{id}/pcap", s.callPcap)
	mux.HandleFunc("GET /api/v1/events", s.events)
	mux.HandleFunc("GET /api/v1/connections", s.listConnections)
	mux.HandleFunc("GET /api/v1/pools", s.listPools)
	mux.HandleFunc("DELETE /api/v1/bans/{source...}", s.liftBan)
	mux.HandleFunc("GET /api/v1/trunks", s.listTrunks)
	mux.HandleFunc("GET /api/v1/survival", s.survival)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	// The page's files carry no data and are served without the token:
	// a browser cannot send a bearer token when it loads a page, so the
	// page asks for the token and sends it with each request it makes.
	root := http.NewServeMux()
	root.Handle("/", s.auth(mux))
	root.HandleFunc("GET /{$}", s.page)
	root.HandleFunc("GET /app.js", s.page)
	root.HandleFunc("GET /style.css", s.page)
	s.srv = &http.Server{Handler: root, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)}
	s.srv.RegisterOnShutdown(func() { s.quitOnce.Do(func() { close(s.quit) }) })
	return s, nil
}

// Check validates a listen address and token pair (for the configuration
// check, before anything is bound).
func Check(listen, token string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("admin.listen %q: want host:port, e.g. 127.0.0.1:8080", listen)
	}
	a, err := netip.ParseAddr(host)
	if (err != nil || !a.IsLoopback()) && host != "localhost" && token == "" {
		return ErrTokenRequired
	}
	return nil
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// SetToken replaces the token (SIGHUP).
func (s *Server) SetToken(t string) { s.token.Store(&t) }

// Serve serves until Close.
func (s *Server) Serve() {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Warn("admin: server stopped", "err", err)
	}
}

// Close stops the server, letting requests in progress finish for a
// second.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// auth requires the bearer token when one is set (RFC 6750 §2.1); a
// wrong one is answered 401 with WWW-Authenticate (§3), compared in
// constant time.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if want := *s.token.Load(); want != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sipedge"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a bearer token is required (admin.token)"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	status := "ok"
	if s.health != nil && s.health.Draining() {
		status = "draining"
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": status, "uptime_seconds": int64(time.Since(s.start).Seconds())})
}

// maxList bounds a listing: a registrar may hold a million bindings.
const maxList = 10000

// limitParam reads ?limit=N (default def, 1 to maxList); false after
// answering 400.
func limitParam(w http.ResponseWriter, r *http.Request, def int) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxList {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("limit %q: use 1 to %d", v, maxList)})
		return 0, false
	}
	return n, true
}

// listConnections: the open TCP/TLS/WS/WSS connections (?limit=N, default 1000).
func (s *Server) listConnections(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r, 1000)
	if !ok {
		return
	}
	list, total := []Connection{}, 0
	if s.conns != nil {
		l, n := s.conns.Connections(limit)
		list, total = append(list, l...), n
	}
	writeJSON(w, http.StatusOK, map[string]any{"connections": list, "total": total, "truncated": total > len(list)})
}

// listCalls: the calls in progress and the last ones that ended
// (?limit=N of each, default 100).
func (s *Server) listCalls(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r, 100)
	if !ok {
		return
	}
	var active, recent [][]byte
	if s.calls != nil {
		var err error
		if active, recent, _, _, _, err = s.calls.CallsSince(limit, 0, 0); err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
	}
	writeIndented(w, appendLists(nil, "active", active, "recent", recent))
}

// appendLists appends {"<key1>":[...],"<key>":[...]} (the object of
// GET /api/v1/calls and of the event stream's events), each list's
// objects joined as they are.
func appendLists(dst []byte, key1 string, list1 [][]byte, key string, other [][]byte) []byte {
	dst = append(dst, `{"`...)
	dst = append(dst, key1...)
	dst = append(dst, `":[`...)
	dst = joinJSON(dst, list1)
	dst = append(dst, `],"`...)
	dst = append(dst, key...)
	dst = append(dst, `":[`...)
	dst = joinJSON(dst, other)
	return append(dst, "]}"...)
}

// writeIndented sends the JSON b indented, as writeJSON sends a value.
func writeIndented(w http.ResponseWriter, b []byte) {
	var ind bytes.Buffer
	if err := json.Indent(&ind, b, "", "  "); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	ind.WriteByte('\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(ind.Bytes())
}

func joinJSON(dst []byte, list [][]byte) []byte {
	for i, b := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, b...)
	}
	return dst
}

// listRegistrations: ?aor=SUBSTRING&limit=N (default 1000, at most
// 10 000).
func (s *Server) listRegistrations(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r, 1000)
	if !ok {
		return
	}
	list, total := []Registration{}, 0
	if s.regs != nil {
		l, n := s.regs.Registrations(r.URL.Query().Get("aor"), limit)
		list, total = append(list, l...), n
	}
	writeJSON(w, http.StatusOK, map[string]any{"registrations": list, "total": total, "truncated": total > len(list)})
}

func (s *Server) listBans(w http.ResponseWriter, r *http.Request) {
	list := []Ban{}
	if s.bans != nil {
		list = append(list, s.bans.List()...)
	}
	writeJSON(w, http.StatusOK, map[string]any{"bans": list})
}

// liftBan lifts the bans of an address or a prefix (203.0.113.7,
// 2001:db8::/32); 404 when nothing was banned there.
func (s *Server) liftBan(w http.ResponseWriter, r *http.Request) {
	v := r.PathValue("source")
	p, err := netip.ParsePrefix(v)
	if err != nil {
		a, err2 := netip.ParseAddr(v)
		if err2 != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("%q: want an address such as 203.0.113.7 or a prefix such as 203.0.113.0/24", v)})
			return
		}
		a = a.Unmap()
		p = netip.PrefixFrom(a, a.BitLen())
	}
	n := 0
	if s.bans != nil {
		n = s.bans.Lift(p)
	}
	if n == 0 {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "no ban for " + p.String(), "lifted": 0})
		return
	}
	s.log.Info("bans lifted through the API", "prefix", p.String(), "lifted", n, "client", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"lifted": n})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Trunk is a provider sipedge registers to, as the API shows it.
type Trunk struct {
	Name      string `json:"name"`
	Registrar string `json:"registrar"`
	// State: registering (the first attempt), registered, failed (no
	// current binding; retrying), not-registering (register: false).
	State      string     `json:"state"`
	Registered bool       `json:"registered"`
	Since      time.Time  `json:"since"`                // when State began
	Contact    string     `json:"contact,omitempty"`    // the contact registered
	ExpiresIn  int64      `json:"expires_in,omitempty"` // seconds left of the current binding
	LastError  string     `json:"last_error,omitempty"` // the last failure, kept after a success
	LastErrAt  *time.Time `json:"last_error_at,omitempty"`
	NextAt     *time.Time `json:"next_attempt,omitempty"` // the next REGISTER (refresh or retry)
	Failures   int        `json:"failures"`               // failed attempts in a row
}

// Trunks is what the API reads of the trunks.
type Trunks interface {
	Trunks() []Trunk
}

// listTrunks: GET /api/v1/trunks.
func (s *Server) listTrunks(w http.ResponseWriter, r *http.Request) {
	list := []Trunk{}
	if s.cfg.Trunks != nil {
		list = append(list, s.cfg.Trunks.Trunks()...)
	}
	writeJSON(w, http.StatusOK, map[string]any{"trunks": list})
}

// survival: GET /api/v1/survival, the mode of VoIP survival.
func (s *Server) survival(w http.ResponseWriter, r *http.Request) {
	var v any = map[string]any{"enabled": false, "mode": "normal"}
	if s.cfg.Survival != nil {
		v = s.cfg.Survival.View()
	}
	writeJSON(w, http.StatusOK, v)
}

// listPools: every pool, its settings and each target's state.
func (s *Server) listPools(w http.ResponseWriter, r *http.Request) {
	var pools any = []any{}
	if s.cfg.Pools != nil {
		pools = s.cfg.Pools.View()
	}
	writeJSON(w, http.StatusOK, map[string]any{"pools": pools})
}
