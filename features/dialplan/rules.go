package dialplan

import (
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"

	"sipedge/proxy"
	"sipedge/sip"
)

// Rule is one dial-plan rule as configured (the dial_plan list of the
// YAML file, docs/CONFIG.md). The first rule that matches a request is
// the one applied; a request no rule matches is routed as usual.
type Rule struct {
	// Name identifies the rule in logs and metrics.
	Name string `yaml:"name"`
	// Prefix matches a Request-URI user (of a tel URI: the number)
	// starting with it; Match is an RE2 regular expression over the
	// whole user instead (anchor it with ^ and $). One of the two.
	Prefix string `yaml:"prefix"`
	Match  string `yaml:"match"`
	// Methods the rule applies to; default INVITE. Only requests outside
	// a dialog are dial-planned.
	Methods []string `yaml:"methods"`

	// The user is rewritten in this order: Replace (with Match: the
	// replacement, $1 or ${name} for the groups), then Strip leading
	// characters, then StripPrefix when the user starts with it, then
	// AddPrefix in front.
	Replace     string `yaml:"replace"`
	Strip       int    `yaml:"strip"`
	StripPrefix string `yaml:"strip_prefix"`
	AddPrefix   string `yaml:"add_prefix"`

	// To is where a matching request goes: a SIP URI (the next hop; the
	// Request-URI keeps its host, as with a static route), a named
	// destination (pool:NAME, trunk:NAME), or empty to go on with the
	// routing table, location service and DNS on the rewritten
	// Request-URI.
	To string `yaml:"to"`

	// Headers edits the forwarded request.
	Headers Headers `yaml:"headers"`
	// Codecs removes payload formats from the SDP offer sent on.
	Codecs Codecs `yaml:"codecs"`
	// Redirects is what a 3xx answer becomes: "relay" (the default)
	// sends it to the caller, "follow" tries its contacts (at most
	// MaxRedirects 3xx responses per request, default 2).
	Redirects    string `yaml:"redirects"`
	MaxRedirects int    `yaml:"max_redirects"`
}

// Headers are the header edits of a rule, made to each forwarded copy in
// this order: Remove, Set, Rewrite, Add.
type Headers struct {
	// Remove deletes every header field with the name.
	Remove []string `yaml:"remove"`
	// Set writes "Name: value": the first field of that name gets the
	// value and the others go; a request without one gets it.
	Set []string `yaml:"set"`
	// Rewrite applies a regular expression replacement to the value of
	// every field of a header.
	Rewrite []HeaderRewrite `yaml:"rewrite"`
	// Add appends "Name: value" fields.
	Add []string `yaml:"add"`
}

// HeaderRewrite replaces what Match matches in the value of every Header
// field with Replace ($1 for a group).
type HeaderRewrite struct {
	Header  string `yaml:"header"`
	Match   string `yaml:"match"`
	Replace string `yaml:"replace"`
}

// Codecs filters the SDP offer of a request the rule forwards.
type Codecs struct {
	// Remove lists payload formats: RTP payload type numbers ("18") or
	// encoding names ("G729", "telephone-event"; any case). A stream
	// that would be left with no format is not sent on: the request is
	// answered 488 (RFC 3261 §21.4.26).
	Remove []string `yaml:"remove"`
}

// RuleError is a rule that cannot be used: Key is the YAML key under the
// rule ("match", "headers.set[1]"), Msg what is wrong and how to fix it.
type RuleError struct {
	Index int
	Key   string
	Msg   string
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("dial_plan[%d].%s: %s", e.Index, e.Key, e.Msg)
}

// coreHeaders are owned by the core and the features that edit them on
// every request (RFC 3261 §16.6: Via, Route, Record-Route, Max-Forwards;
// the dialog's identifiers, §12; the body's framing): a rule editing them
// would break routing, transactions or dialogs.
var coreHeaders = map[sip.HeaderKind]string{
	sip.KindVia:           "the core adds and removes Via (RFC 3261 §16.6, §16.7)",
	sip.KindRoute:         "the route set is the core's (RFC 3261 §16.4, §16.6)",
	sip.KindRecordRoute:   "the core writes Record-Route (RFC 3261 §16.6 step 4)",
	sip.KindCallID:        "Call-ID identifies the dialog (RFC 3261 §12)",
	sip.KindCSeq:          "CSeq matches requests and responses (RFC 3261 §8.1.1.5)",
	sip.KindFrom:          "From carries the dialog's tag (RFC 3261 §12)",
	sip.KindTo:            "To carries the dialog's tag (RFC 3261 §12)",
	sip.KindContact:       "Contact is the dialog's remote target, edited by NAT aliasing and topology hiding",
	sip.KindContentLength: "Content-Length frames the message (RFC 3261 §18.3)",
	sip.KindContentType:   "the body is the media features' (use codecs: to filter the SDP)",
	sip.KindMaxForwards:   "the core decrements Max-Forwards (RFC 3261 §16.6 step 3)",
}

// compiled is a rule ready to run.
type compiled struct {
	name        string
	prefix      string
	re          *regexp.Regexp
	replace     string
	methods     []string
	strip       int
	stripPrefix string
	addPrefix   string
	to          string
	dest        proxy.Router // nil: the routing table decides
	headers     []headerOp
	codecs      []string // payload type numbers and upper-case encoding names
	redirects   int
	hits        *atomic.Uint64 // Stats.Matched of this rule's name
}

type opKind uint8

const (
	opRemove opKind = iota
	opSet
	opRewrite
	opAdd
)

// headerOp is one header edit.
type headerOp struct {
	kind  opKind
	name  string
	hk    sip.HeaderKind // KindOther: matched by name
	value []byte
	re    *regexp.Regexp
	repl  []byte
}

// Env is what rules are compiled against: the destinations features own
// (proxy.Table.Named, by "KIND:NAME") and the resolver for SIP URIs with
// a host name.
type Env struct {
	Named    map[string]proxy.Router
	Resolver proxy.Resolver
}

// Check compiles rules without destinations: what the configuration can
// check on its own (a named destination is looked up at start).
func Check(rules []Rule) error {
	_, err := compile(rules, Env{}, false)
	return err
}

func compile(rules []Rule, env Env, resolve bool) ([]*compiled, error) {
	var out []*compiled
	names := map[string]bool{}
	for i := range rules {
		r := &rules[i]
		bad := func(key, msg string, args ...any) error {
			return &RuleError{Index: i, Key: key, Msg: fmt.Sprintf(msg, args...)}
		}
		c := &compiled{name: r.Name, prefix: r.Prefix, replace: r.Replace, strip: r.Strip,
			stripPrefix: r.StripPrefix, addPrefix: r.AddPrefix, to: r.To}
		if r.Name == "" {
			return nil, bad("name", "every rule needs a name (it appears in logs and metrics)")
		}
		if names[r.Name] {
			return nil, bad("name", "%q is the name of an earlier rule; give each rule its own", r.Name)
		}
		names[r.Name] = true
		switch {
		case r.Prefix == "" && r.Match == "":
			return nil, bad("prefix", "give prefix (e.g. \"00\") or match (a regular expression such as \"^0([1-9][0-9]+)$\")")
		case r.Prefix != "" && r.Match != "":
			return nil, bad("match", "give prefix or match, not both")
		case r.Match != "":
			re, err := regexp.Compile(r.Match)
			if err != nil {
				return nil, bad("match", "%q is not a regular expression (RE2 syntax): %v", r.Match, err)
			}
			c.re = re
		}
		if !validUser(r.Prefix) {
			return nil, bad("prefix", "%q: a prefix is the start of a number or user name (letters, digits, + - . _ *)", r.Prefix)
		}
		if r.Replace != "" && c.re == nil {
			return nil, bad("replace", "replace needs match: it is the replacement of what the regular expression matched ($1 for a group)")
		}
		if r.Strip < 0 || r.Strip > 64 {
			return nil, bad("strip", "%d: the number of leading characters to remove, 0 to 64", r.Strip)
		}
		if !validUser(r.StripPrefix) || !validUser(r.AddPrefix) {
			return nil, bad("add_prefix", "strip_prefix and add_prefix may hold letters, digits, + - . _ * only")
		}
		c.methods = r.Methods
		if len(c.methods) == 0 {
			c.methods = []string{"INVITE"}
		}
		for k, m := range c.methods {
			switch m {
			case "ACK", "CANCEL", "BYE", "REGISTER", "PRACK", "UPDATE", "INFO":
				return nil, bad(fmt.Sprintf("methods[%d]", k), "%s follows its dialog or registration; dial-plan rules apply to requests that start something (INVITE, MESSAGE, SUBSCRIBE, OPTIONS, REFER)", m)
			}
			if !isToken(m) || strings.ToUpper(m) != m {
				return nil, bad(fmt.Sprintf("methods[%d]", k), "%q: a method name in capitals, e.g. INVITE", m)
			}
		}
		if err := c.compileTo(r.To, env, resolve, bad); err != nil {
			return nil, err
		}
		if err := c.compileHeaders(&r.Headers, bad); err != nil {
			return nil, err
		}
		for k, codec := range r.Codecs.Remove {
			if codec == "" || !isToken(codec) {
				return nil, bad(fmt.Sprintf("codecs.remove[%d]", k), "%q: a payload type number (18) or an encoding name (G729)", codec)
			}
			c.codecs = append(c.codecs, strings.ToUpper(codec))
		}
		switch r.Redirects {
		case "", "relay":
			if r.MaxRedirects != 0 {
				return nil, bad("max_redirects", "only with redirects: follow")
			}
		case "follow":
			c.redirects = r.MaxRedirects
			if c.redirects == 0 {
				c.redirects = 2
			}
			if c.redirects < 1 || c.redirects > 5 {
				return nil, bad("max_redirects", "%d: 1 to 5 (default 2)", r.MaxRedirects)
			}
		default:
			return nil, bad("redirects", "%q: use relay (the caller gets the 3xx) or follow (sipedge tries its contacts)", r.Redirects)
		}
		out = append(out, c)
	}
	return out, nil
}

func (c *compiled) compileTo(to string, env Env, resolve bool, bad func(string, string, ...any) error) error {
	if to == "" {
		return nil
	}
	if kind, name, ok := proxy.NamedDestination(to); ok {
		if !resolve {
			return nil
		}
		d, found := env.Named[to]
		if !found {
			return bad("to", "%s: no %s named %s is configured", to, kind, name)
		}
		c.dest = d
		return nil
	}
	u, err := sip.ParseURI([]byte(to))
	if err != nil || !u.IsSIP() {
		return bad("to", "%q: a SIP URI (sip:gw.example.net:5060), a named destination (pool:NAME, trunk:NAME), or nothing to use the routing table", to)
	}
	if !resolve {
		return nil
	}
	t := &proxy.Table{Routes: []proxy.StaticRoute{{Name: "dial_plan " + c.name, To: to}}, Resolver: env.Resolver}
	if err := t.Compile(); err != nil {
		return bad("to", "%v", err)
	}
	c.dest = t
	return nil
}

func (c *compiled) compileHeaders(h *Headers, bad func(string, string, ...any) error) error {
	used := map[string]string{} // lower-case name → the list that edits it
	claim := func(key, name, list string) error {
		hk := sip.LookupKind([]byte(name))
		if why, ok := coreHeaders[hk]; ok {
			return bad(key, "%s cannot be edited: %s", name, why)
		}
		n := strings.ToLower(name)
		if hk != sip.KindOther {
			n = strings.ToLower(hk.String())
		}
		if prev := used[n]; prev != "" && !(prev == "remove" && list == "add") && !(prev == "add" && list == "add") {
			return bad(key, "%s is edited by headers.%s already; use one of remove, set, rewrite for a header (remove then add is allowed)", name, prev)
		}
		used[n] = list
		return nil
	}
	for k, name := range h.Remove {
		key := fmt.Sprintf("headers.remove[%d]", k)
		if !isToken(name) {
			return bad(key, "%q is not a header name", name)
		}
		if err := claim(key, name, "remove"); err != nil {
			return err
		}
		c.headers = append(c.headers, headerOp{kind: opRemove, name: name, hk: sip.LookupKind([]byte(name))})
	}
	for k, line := range h.Set {
		key := fmt.Sprintf("headers.set[%d]", k)
		name, value, err := headerLine(line)
		if err != nil {
			return bad(key, "%v", err)
		}
		if err := claim(key, name, "set"); err != nil {
			return err
		}
		c.headers = append(c.headers, headerOp{kind: opSet, name: name, hk: sip.LookupKind([]byte(name)), value: []byte(value)})
	}
	for k, rw := range h.Rewrite {
		key := fmt.Sprintf("headers.rewrite[%d]", k)
		if !isToken(rw.Header) {
			return bad(key+".header", "%q is not a header name", rw.Header)
		}
		if err := claim(key+".header", rw.Header, "rewrite"); err != nil {
			return err
		}
		re, err := regexp.Compile(rw.Match)
		if err != nil || rw.Match == "" {
			return bad(key+".match", "%q: a regular expression (RE2 syntax) over the header value", rw.Match)
		}
		if !validValue(rw.Replace) {
			return bad(key+".replace", "control characters (a line break) are not allowed in a header value")
		}
		c.headers = append(c.headers, headerOp{kind: opRewrite, name: rw.Header, hk: sip.LookupKind([]byte(rw.Header)), re: re, repl: []byte(rw.Replace)})
	}
	for k, line := range h.Add {
		key := fmt.Sprintf("headers.add[%d]", k)
		name, value, err := headerLine(line)
		if err != nil {
			return bad(key, "%v", err)
		}
		if err := claim(key, name, "add"); err != nil {
			return err
		}
		c.headers = append(c.headers, headerOp{kind: opAdd, name: name, hk: sip.LookupKind([]byte(name)), value: []byte(value)})
	}
	return nil
}

// headerLine splits "Name: value".
func headerLine(line string) (name, value string, err error) {
	name, value, ok := strings.Cut(line, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	switch {
	case !ok || !isToken(name):
		return "", "", fmt.Errorf("%q: write \"Name: value\", e.g. \"User-Agent: sipedge\"", line)
	case value == "":
		return "", "", fmt.Errorf("%q has no value; to delete the header use headers.remove", line)
	case !validValue(value):
		return "", "", fmt.Errorf("%q: control characters (a line break) are not allowed in a header value", line)
	}
	return name, value, nil
}

func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// isToken checks RFC 3261 §25.1 token (header names, methods).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}

// validUser checks what a rewritten user may hold: the characters of
// telephone numbers and plain user names, which need no escaping in a SIP
// URI user part (RFC 3261 §25.1 unreserved) or a tel URI (RFC 3966).
func validUser(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("+-._*", c) >= 0) {
			return false
		}
	}
	return true
}
