package guard

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The log lines. Each is a whole sentence in the message itself, so a
// pattern matches it whatever the handler adds around it (text or JSON,
// with or without a timestamp). The source address comes first, before
// anything the peer chose (user, realm), and what the peer chose is
// quoted: a user name cannot make a line name another address.

// authFailureLine is
//
//	auth failure from 203.0.113.7:5060 user="alice" realm="sip.example.com" reason=wrong-password
func authFailureLine(src netip.AddrPort, user, realm, reason string) string {
	var b strings.Builder
	b.Grow(64 + len(user) + len(realm) + len(reason))
	b.WriteString("auth failure from ")
	b.WriteString(src.String())
	b.WriteString(" user=")
	b.WriteString(strconv.Quote(user))
	b.WriteString(" realm=")
	b.WriteString(strconv.Quote(realm))
	b.WriteString(" reason=")
	b.WriteString(token(reason))
	return b.String()
}

// token keeps a reason a single word of letters, digits, '-', '_' and
// '.'; anything else becomes '-'.
func token(s string) string {
	if s == "" {
		return "unknown"
	}
	ok := true
	for i := 0; i < len(s); i++ {
		ok = ok && isTokenByte(s[i])
	}
	if ok && len(s) <= 64 {
		return s
	}
	b := []byte(s[:min(len(s), 64)])
	for i := range b {
		if !isTokenByte(b[i]) {
			b[i] = '-'
		}
	}
	return string(b)
}

func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// banLine is
//
//	ban 203.0.113.7 reason=rate requests=100 window=2s for=5m0s
//	ban 203.0.113.7 reason=auth-failures failures=10 window=1m0s for=15m0s
func banLine(a netip.Addr, r banReason, n int, w, d time.Duration) string {
	what := " requests="
	if r == banAuth {
		what = " failures="
	}
	return "ban " + a.String() + " reason=" + r.String() + what + strconv.Itoa(n) +
		" window=" + w.String() + " for=" + d.String()
}

// unbanLine is
//
//	unban 203.0.113.7 reason=expired
//	unban 203.0.113.7 reason=lifted
func unbanLine(a netip.Addr, lifted bool) string {
	why := "expired"
	if lifted {
		why = "lifted"
	}
	return "unban " + a.String() + " reason=" + why
}

// lockLine and unlockLine are the per-user lock's (no address: fail2ban
// has nothing to ban).
func lockLine(user string, n int, w, d time.Duration) string {
	return "user locked user=" + strconv.Quote(user) + " reason=auth-failures failures=" + strconv.Itoa(n) +
		" window=" + w.String() + " for=" + d.String()
}

func unlockLine(user string) string {
	return "user unlocked user=" + strconv.Quote(user) + " reason=expired"
}

// emit writes an event's line.
func (g *Guard) emit(ev event) {
	switch ev.kind {
	case evBan:
		g.log.Warn(banLine(ev.addr, ev.reason, ev.n, time.Duration(ev.window), time.Duration(ev.dur)))
		g.changed(Change{Source: netip.PrefixFrom(ev.addr, ev.addr.BitLen()), Reason: ev.reason.String(), Until: time.Now().Add(time.Duration(ev.dur))})
	case evUnban:
		g.log.Info(unbanLine(ev.addr, ev.lifted))
	}
}
