package resolve

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sipedge/transport"
)

func naptr(order, pref uint16, flags, service, regexp, repl string) *dns.NAPTR {
	return &dns.NAPTR{
		Hdr:   dns.RR_Header{Name: "example.test.", Rrtype: dns.TypeNAPTR, Class: dns.ClassINET, Ttl: 60},
		Order: order, Preference: pref, Flags: flags, Service: service, Regexp: regexp, Replacement: repl,
	}
}

func TestUsableNAPTR(t *testing.T) {
	all := []transport.Proto{transport.UDP, transport.TCP, transport.TLS}
	tlsFirst := []transport.Proto{transport.TLS, transport.TCP, transport.UDP}
	recs := []*dns.NAPTR{
		naptr(20, 10, "s", "SIP+D2U", "", "_sip._udp.example.test."),
		naptr(10, 20, "S", "sip+d2t", "", "_SIP._TCP.example.test."),
		naptr(10, 10, "s", "SIPS+D2T", "", "_sips._tcp.example.test."),
		naptr(5, 10, "s", "SIP+D2S", "", "_sip._sctp.example.test."),       // SCTP unsupported
		naptr(5, 10, "s", "SIP+D2W", "", "_sip._ws.example.test."),         // WebSocket unsupported
		naptr(5, 10, "u", "E2U+sip", "!^.*$!sip:a@b!", ""),                 // ENUM, not SIP
		naptr(5, 10, "", "SIP+D2U", "", "other.example.test."),             // non-terminal
		naptr(5, 10, "a", "SIP+D2U", "", "host.example.test."),             // A flag: not §4.1
		naptr(5, 10, "s", "SIP+D2U", "", "."),                              // no replacement
		naptr(5, 10, "s", "SIP+D2T", "", "bad..name."),                     // not a name
		naptr(30, 10, "s", "SIP+D2U", "", "_sip._udp.backup.example.test"), // relative: made absolute
	}
	type row = string // "order/pref proto replacement"
	cases := []struct {
		name   string
		secure bool
		prefer []transport.Proto
		want   []row
	}{
		{"sip all", false, all, []row{
			"10/10 TLS _sips._tcp.example.test.",
			"10/20 TCP _sip._tcp.example.test.",
			"20/10 UDP _sip._udp.example.test.",
			"30/10 UDP _sip._udp.backup.example.test.",
		}},
		{"sips only SIPS+D2T", true, all, []row{"10/10 TLS _sips._tcp.example.test."}},
		{"prefer without TLS", false, []transport.Proto{transport.UDP, transport.TCP}, []row{
			"10/20 TCP _sip._tcp.example.test.",
			"20/10 UDP _sip._udp.example.test.",
			"30/10 UDP _sip._udp.backup.example.test.",
		}},
		{"sips without TLS", true, []transport.Proto{transport.UDP}, nil},
		{"tls first (order still rules)", false, tlsFirst, []row{
			"10/10 TLS _sips._tcp.example.test.",
			"10/20 TCP _sip._tcp.example.test.",
			"20/10 UDP _sip._udp.example.test.",
			"30/10 UDP _sip._udp.backup.example.test.",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []row
			for _, ch := range usableNAPTR(recs, c.secure, c.prefer) {
				got = append(got, fmt.Sprintf("%d/%d %v %s", ch.order, ch.pref, ch.proto, ch.replacement))
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("got\n %q\nwant\n %q", got, c.want)
			}
		})
	}

	// Equal order and preference: the proxy's own preference breaks the tie.
	tie := []*dns.NAPTR{
		naptr(10, 10, "s", "SIP+D2U", "", "_sip._udp.example.test."),
		naptr(10, 10, "s", "SIP+D2T", "", "_sip._tcp.example.test."),
	}
	if got := usableNAPTR(tie, false, tlsFirst); got[0].proto != transport.TCP {
		t.Errorf("tie: first %v, want TCP", got[0].proto)
	}
	if got := usableNAPTR(nil, false, all); got != nil {
		t.Errorf("nil input: %v", got)
	}
}

func srv(prio, weight uint16, target string) *dns.SRV {
	return &dns.SRV{Hdr: dns.RR_Header{Rrtype: dns.TypeSRV, Class: dns.ClassINET}, Priority: prio, Weight: weight, Port: 5060, Target: target}
}

// seq returns an intn that yields the given values in turn (each clamped to
// the allowed range), recording the n it was asked for.
func seq(vals ...int) (func(int) int, *[]int) {
	var asked []int
	i := 0
	return func(n int) int {
		asked = append(asked, n)
		v := 0
		if i < len(vals) {
			v = vals[i]
		}
		i++
		return min(v, n-1)
	}, &asked
}

func TestOrderSRV(t *testing.T) {
	big := 1 << 30
	cases := []struct {
		name  string
		in    []*dns.SRV
		rnd   []int
		want  string
		asked []int // n passed to intn, i.e. sum of weights + 1 at each step
	}{
		{"empty", nil, nil, "", nil},
		{"priority ascending", []*dns.SRV{srv(20, 0, "c"), srv(10, 0, "a"), srv(15, 0, "b")},
			nil, "a b c", []int{1, 1, 1}},
		// 80/20: running sums a=80, b=100. r=0..80 picks a, 81..100 b.
		{"weight low draw", []*dns.SRV{srv(1, 80, "a"), srv(1, 20, "b")}, []int{80}, "a b", []int{101, 21}},
		{"weight high draw", []*dns.SRV{srv(1, 80, "a"), srv(1, 20, "b")}, []int{81}, "b a", []int{101, 81}},
		// Zero weights go first in the list: r=0 selects one of them.
		{"zero weight drawn on 0", []*dns.SRV{srv(1, 10, "a"), srv(1, 0, "z")}, []int{0}, "z a", []int{11, 11}},
		{"zero weight otherwise last", []*dns.SRV{srv(1, 0, "z"), srv(1, 10, "a")}, []int{1, 0}, "a z", []int{11, 1}},
		{"all zero keeps order", []*dns.SRV{srv(1, 0, "a"), srv(1, 0, "b"), srv(1, 0, "c")}, nil, "a b c", []int{1, 1, 1}},
		{"groups independent", []*dns.SRV{srv(2, 1, "x"), srv(1, 5, "a"), srv(1, 5, "b"), srv(2, 1, "y")},
			[]int{big, big, big, big}, "b a y x", []int{11, 6, 3, 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := slices.Clone(c.in)
			intn, asked := seq(c.rnd...)
			var got []string
			for _, s := range orderSRV(c.in, intn) {
				got = append(got, s.Target)
			}
			if g := strings.Join(got, " "); g != c.want {
				t.Errorf("order %q, want %q", g, c.want)
			}
			if !slices.Equal(*asked, c.asked) {
				t.Errorf("intn asked %v, want %v", *asked, c.asked)
			}
			if !slices.Equal(before, c.in) {
				t.Error("input modified")
			}
		})
	}
}

// TestOrderSRVDistribution checks the weighted selection with the real
// random source, without DNS.
func TestOrderSRVDistribution(t *testing.T) {
	in := []*dns.SRV{srv(0, 0, "zero"), srv(0, 60, "a"), srv(0, 30, "b"), srv(0, 10, "c")}
	first := map[string]int{}
	const n = 20000
	for i := 0; i < n; i++ {
		first[orderSRV(in, randIntN)[0].Target]++
	}
	for target, want := range map[string]float64{"a": 0.6, "b": 0.3, "c": 0.1, "zero": 0} {
		if got := float64(first[target]) / n; got < want-0.03 || got > want+0.03 {
			t.Errorf("%s first %.3f, want %.2f±0.03", target, got, want)
		}
	}
}

func msg(rcode int, answer []dns.RR, ns []dns.RR, extra []dns.RR) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion("q.test.", dns.TypeA)
	m.Response = true
	m.Rcode = rcode
	m.Answer, m.Ns, m.Extra = answer, ns, extra
	return m
}

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestParseAnswer feeds odd replies to the parser: none may panic, and each
// must give a sensible entry.
func TestParseAnswer(t *testing.T) {
	now := time.Unix(1000, 0)
	loop := []dns.RR{}
	for i := 0; i < 10; i++ {
		loop = append(loop, rr(t, fmt.Sprintf("c%d.test. 60 IN CNAME c%d.test.", i, i+1)))
	}
	cases := []struct {
		name  string
		qname string
		qtype uint16
		m     *dns.Msg
		check func(*entry, error) error
	}{
		{"empty NOERROR is NODATA, 30s", "q.test.", dns.TypeA, msg(0, nil, nil, nil), func(e *entry, err error) error {
			if err != nil || !e.negative || e.nxdomain || e.expires != now.Add(30*time.Second) {
				return fmt.Errorf("%+v %v", e, err)
			}
			return nil
		}},
		{"NXDOMAIN with SOA", "q.test.", dns.TypeA, msg(3, nil, []dns.RR{rr(t, "test. 300 IN SOA ns.test. h.test. 1 2 3 4 45")}, nil), func(e *entry, err error) error {
			if err != nil || !e.nxdomain || e.expires != now.Add(45*time.Second) {
				return fmt.Errorf("%+v %v", e, err)
			}
			return nil
		}},
		{"SOA TTL below MINIMUM", "q.test.", dns.TypeA, msg(3, nil, []dns.RR{rr(t, "test. 10 IN SOA ns.test. h.test. 1 2 3 4 45")}, nil), func(e *entry, err error) error {
			if e.expires != now.Add(10*time.Second) {
				return fmt.Errorf("expires %v", e.expires.Sub(now))
			}
			return nil
		}},
		{"records for other names ignored", "q.test.", dns.TypeA, msg(0, []dns.RR{rr(t, "evil.test. 60 IN A 192.0.2.1")}, nil, nil), func(e *entry, err error) error {
			if err != nil || !e.negative {
				return fmt.Errorf("%+v %v", e, err)
			}
			return nil
		}},
		{"CNAME chain within answer, min TTL, max clamp", "Q.test.", dns.TypeA, msg(0, []dns.RR{
			rr(t, "q.test. 100000 IN CNAME r.test."),
			rr(t, "r.test. 50 IN CNAME s.test."),
			rr(t, "s.test. 7200 IN A 192.0.2.1"),
		}, nil, nil), func(e *entry, err error) error {
			if err != nil || len(e.rrs) != 1 || e.hops != 2 || e.expires != now.Add(50*time.Second) {
				return fmt.Errorf("%+v %v", e, err)
			}
			return nil
		}},
		{"TTL clamped to 1h", "q.test.", dns.TypeA, msg(0, []dns.RR{rr(t, "q.test. 100000 IN A 192.0.2.1")}, nil, nil), func(e *entry, err error) error {
			if e.expires != now.Add(time.Hour) {
				return fmt.Errorf("expires %v", e.expires.Sub(now))
			}
			return nil
		}},
		{"CNAME without target data is an alias", "q.test.", dns.TypeA, msg(0, []dns.RR{rr(t, "q.test. 60 IN CNAME R.test.")}, nil, nil), func(e *entry, err error) error {
			if err != nil || e.alias != "r.test." || e.hops != 1 || e.negative {
				return fmt.Errorf("%+v %v", e, err)
			}
			return nil
		}},
		{"CNAME to NXDOMAIN", "q.test.", dns.TypeA, msg(3, []dns.RR{rr(t, "q.test. 5 IN CNAME r.test.")}, nil, nil), func(e *entry, err error) error {
			if err != nil || !e.negative || e.expires != now.Add(5*time.Second) {
				return fmt.Errorf("%+v %v", e, err)
			}
			return nil
		}},
		{"CNAME chain too long", "c0.test.", dns.TypeA, msg(0, loop, nil, nil), func(e *entry, err error) error {
			if !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("err %v", err)
			}
			return nil
		}},
		{"CNAME loop", "a.test.", dns.TypeA, msg(0, []dns.RR{rr(t, "a.test. 60 IN CNAME b.test."), rr(t, "b.test. 60 IN CNAME a.test.")}, nil, nil), func(e *entry, err error) error {
			if !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("err %v", err)
			}
			return nil
		}},
		{"SRV with additional for its target only", "_sip._udp.q.test.", dns.TypeSRV, msg(0,
			[]dns.RR{rr(t, "_sip._udp.q.test. 60 IN SRV 0 0 5060 h.q.test.")}, nil,
			[]dns.RR{rr(t, "h.q.test. 20 IN A 192.0.2.1"), rr(t, "x.q.test. 60 IN A 192.0.2.2"), rr(t, "h.q.test. 60 IN TXT \"x\"")}),
			func(e *entry, err error) error {
				if err != nil || len(e.extra) != 1 || e.extraExpires != now.Add(20*time.Second) || e.expires != now.Add(60*time.Second) {
					return fmt.Errorf("%+v %v", e, err)
				}
				return nil
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := parseAnswer(c.m, strings.ToLower(c.qname), c.qtype, now)
			if err := c.check(e, err); err != nil {
				t.Error(err)
			}
		})
	}

	// Malformed address records are skipped, not dereferenced.
	bad := []dns.RR{
		&dns.A{Hdr: dns.RR_Header{Name: "q.test.", Rrtype: dns.TypeA, Class: dns.ClassINET}},
		&dns.AAAA{Hdr: dns.RR_Header{Name: "q.test.", Rrtype: dns.TypeAAAA, Class: dns.ClassINET}, AAAA: net.IP{1, 2}},
		&dns.A{Hdr: dns.RR_Header{Name: "q.test.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(192, 0, 2, 7)},
	}
	if got := appendAddrs(nil, bad); len(got) != 1 || got[0].String() != "192.0.2.7" {
		t.Errorf("appendAddrs = %v", got)
	}
}
