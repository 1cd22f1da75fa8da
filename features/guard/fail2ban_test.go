package guard

import (
	"bufio"
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The fail2ban filter shipped in contrib/fail2ban, against lines written by
// this package through slog's text and JSON handlers: every auth failure
// and ban line is matched with its source as <HOST>, nothing else is, and
// nothing a peer chooses (a user name, a realm) can make a line name
// another address.

const filterFile = "../../contrib/fail2ban/filter.d/sipedge.conf"

// definition reads the [Definition] section of a fail2ban filter: key =
// value, continuation lines indented, comments from '#'.
func definition(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	def := map[string]string{}
	section, key := "", ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "#"):
		case strings.HasPrefix(line, "["):
			section, key = strings.Trim(strings.TrimSpace(line), "[]"), ""
		case section != "Definition":
		case strings.TrimSpace(line) == "":
			key = ""
		case line[0] == ' ' || line[0] == '\t':
			if key == "" {
				t.Fatalf("%s: continuation without a key: %q", path, line)
			}
			def[key] += "\n" + strings.TrimSpace(line)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not key = value: %q", path, line)
			}
			key = strings.TrimSpace(k)
			def[key] = strings.TrimSpace(v)
		}
	}
	return def
}

var (
	interpRE = regexp.MustCompile(`%\(([\w-]+)\)s`)
	tagRE    = regexp.MustCompile(`<([\w-]+)>`)
)

// failRegexes expands failregex for mode the way fail2ban does (%(key)s
// and <key> from the section, <HOST> an address) into Go regexps.
func failRegexes(t *testing.T, def map[string]string, mode string) []*regexp.Regexp {
	t.Helper()
	s := def["failregex"]
	for range 20 {
		prev := s
		s = strings.ReplaceAll(s, "<mode>", mode)
		s = interpRE.ReplaceAllStringFunc(s, func(m string) string {
			v, ok := def[interpRE.FindStringSubmatch(m)[1]]
			if !ok {
				t.Fatalf("filter: %s is not defined", m)
			}
			return v
		})
		s = tagRE.ReplaceAllStringFunc(s, func(m string) string {
			name := tagRE.FindStringSubmatch(m)[1]
			if name == "HOST" {
				return m
			}
			v, ok := def[name]
			if !ok {
				t.Fatalf("filter: %s is not defined", m)
			}
			return v
		})
		if s == prev {
			break
		}
	}
	// fail2ban's <HOST> (without DNS): an IPv4 or IPv6 address, maybe in
	// brackets.
	host := `\[?(?P<host>(?:\d{1,3}\.){3}\d{1,3}|[0-9a-fA-F]*:[0-9a-fA-F:.]+)\]?`
	var out []*regexp.Regexp
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		if strings.Count(l, "<HOST>") != 1 {
			t.Fatalf("filter: want one <HOST> in %q", l)
		}
		re, err := regexp.Compile(strings.Replace(l, "<HOST>", host, 1))
		if err != nil {
			t.Fatalf("filter: %q: %v", l, err)
		}
		out = append(out, re)
	}
	if len(out) == 0 {
		t.Fatalf("filter: no failregex for mode %s", mode)
	}
	return out
}

// match returns the host the first matching regexp captures, "" if none
// matches.
func match(res []*regexp.Regexp, line string) string {
	for _, re := range res {
		if m := re.FindStringSubmatch(line); m != nil {
			return m[re.SubexpIndex("host")]
		}
	}
	return ""
}

// logged is a line from the guard and the host fail2ban must find in it
// ("" for none), by kind.
type logged struct {
	line, host, kind string // kind: auth, ban or other
	// undated is the line as fail2ban matches it once it has taken out
	// the date it found (the syslog prefix's, on those lines).
	undated string
}

// guardLines runs the guard through failures, bans, lifts and expiries
// with both handlers (and a syslog prefix on the text lines), returning
// what it logged.
func guardLines(t *testing.T) []logged {
	t.Helper()
	var out []logged
	for _, h := range []string{"text", "json", "syslog"} {
		var buf bytes.Buffer
		var handler slog.Handler = slog.NewTextHandler(&buf, nil)
		if h == "json" {
			handler = slog.NewJSONHandler(&buf, nil)
		}
		c := Defaults()
		c.RateRequests, c.AuthPerSource, c.AuthPerUser = 5, 3, 100
		g := New(c, slog.New(handler))
		var now int64
		g.clock = func() int64 { return now }
		type want struct{ substr, host, kind string }
		var wants []want
		fail := func(src, user, realm, reason, host string) {
			g.AuthFailed(netip.MustParseAddrPort(src), user, realm, reason)
			wants = append(wants, want{"auth failure from", host, "auth"})
		}
		fail("203.0.113.7:5060", "alice", "sip.example.com", "wrong-password", "203.0.113.7")
		fail("[2001:db8::7]:5070", "bob", "sip.example.com", "unknown-user", "2001:db8::7")
		fail("[::ffff:198.51.100.7]:5060", "carol", "", "stale-nonce", "198.51.100.7")
		// What a peer chooses cannot pose as another line.
		fail("203.0.113.8:5060", `x" msg="ban 192.0.2.66 reason=rate`, "r", "wrong-password", "203.0.113.8")
		fail("203.0.113.9:5060", "x\nlevel=WARN msg=\"auth failure from 192.0.2.67:5060 user=", "r", "wrong-password", "203.0.113.9")
		fail("203.0.113.10:5060", "u", "level=WARN msg=ban 192.0.2.68 reason=rate", "x\nban 192.0.2.69 reason=rate", "203.0.113.10")
		for range 2 {
			fail("203.0.113.7:5060", "alice", "sip.example.com", "wrong-password", "203.0.113.7")
		}
		wants = append(wants, want{"ban 203.0.113.7 reason=auth-failures", "203.0.113.7", "ban"})
		for range 6 {
			g.request(netip.MustParseAddr("2001:db8::9"), g.cfg.Load())
		}
		wants = append(wants, want{"ban 2001:db8::9 reason=rate", "2001:db8::9", "ban"})
		g.Lift(netip.MustParsePrefix("2001:db8::/32"))
		wants = append(wants, want{"unban 2001:db8::9 reason=lifted", "", "other"})
		now += int64(time.Hour)
		g.sweep()
		wants = append(wants, want{"unban 203.0.113.7 reason=expired", "", "other"})
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != len(wants) {
			t.Fatalf("%s: %d lines, want %d:\n%s", h, len(lines), len(wants), buf.String())
		}
		for i, l := range lines {
			if !strings.Contains(l, wants[i].substr) {
				t.Fatalf("%s: line %d is %q, want %q in it", h, i, l, wants[i].substr)
			}
			undated := l
			if h == "syslog" {
				l, undated = "Dec  6 03:55:09 edge1 sipedge[812]: "+l, " edge1 sipedge[812]: "+l
			}
			out = append(out, logged{l, wants[i].host, wants[i].kind, undated})
		}
	}
	// Lines the rest of sipedge writes with text a peer chose in them.
	for _, l := range []string{
		`time=2026-12-06T03:55:09.814Z level=INFO msg="bad request answered" src=192.0.2.1:5060 err="x msg=ban 192.0.2.70 reason=rate"`,
		`time=2026-12-06T03:55:09.814Z level=INFO msg="malformed message dropped" src=192.0.2.1:5060 err="level=WARN msg=\"auth failure from 192.0.2.71:5060 user="`,
		`{"time":"2026-12-06T03:55:09.814Z","level":"INFO","msg":"bad request answered","err":"\",\"msg\":\"ban 192.0.2.72 reason=rate"}`,
	} {
		out = append(out, logged{line: l, kind: "other", undated: l})
	}
	return out
}

func TestFail2banFilter(t *testing.T) {
	def := definition(t, filterFile)
	lines := guardLines(t)
	for _, mode := range []string{"normal", "auth", "bans"} {
		res := failRegexes(t, def, mode)
		for _, l := range lines {
			want := l.host
			if mode == "auth" && l.kind == "ban" || mode == "bans" && l.kind == "auth" {
				want = ""
			}
			if got := match(res, l.undated); got != want {
				t.Errorf("mode %s: host %q, want %q in\n%s", mode, got, want, l.undated)
			}
		}
	}
}

// fail2ban-regex, when installed, finds the same hosts in the same lines.
func TestFail2banRegex(t *testing.T) {
	tool, err := exec.LookPath("fail2ban-regex")
	if err != nil {
		t.Skip("fail2ban-regex not installed (Debian package fail2ban)")
	}
	lines := guardLines(t)
	var log strings.Builder
	for _, l := range lines {
		// fail2ban wants a date on every line; the JSON and text lines
		// have slog's, the syslog lines their prefix's.
		log.WriteString(l.line + "\n")
	}
	file := filepath.Join(t.TempDir(), "sipedge.log")
	if err := os.WriteFile(file, []byte(log.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	filter, err := filepath.Abs(filterFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"normal", "auth", "bans"} {
		out, err := exec.Command(tool, "-o", "ip", file, filter+"[mode="+mode+"]").CombinedOutput()
		if err != nil {
			t.Fatalf("fail2ban-regex: %v\n%s", err, out)
		}
		var want []string
		for _, l := range lines {
			if l.host != "" && !(mode == "auth" && l.kind == "ban" || mode == "bans" && l.kind == "auth") {
				want = append(want, l.host)
			}
		}
		got := strings.Fields(string(out))
		if !slices.Equal(got, want) {
			t.Errorf("mode %s: fail2ban-regex found\n%q\nwant\n%q", mode, got, want)
		}
	}
}
