package registrar

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"sipedge/internal/race"
	"sipedge/store"
	"sipedge/transport"
)

// TestInstanceIdentity: which binding a contact refers to (findBinding),
// with and without +sip.instance and reg-id (RFC 5626, RFC 5627 §6). Each
// step is a REGISTER from behind a NAT, from its own source port; after
// it, Lookup, the 200's Contact lines and RangeNAT must agree, and a
// restart on the same store must bring back exactly the same bindings.
func TestInstanceIdentity(t *testing.T) {
	const (
		x      = `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-00000000000a>"`
		y      = `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-00000000000b>"`
		instX  = "<urn:uuid:00000000-0000-1000-8000-00000000000a>"
		instY  = "<urn:uuid:00000000-0000-1000-8000-00000000000b>"
		priv   = "sip:alice@10.0.0.5:5060"
		pub    = "sip:alice@203.0.113.1:5060"
		pub2   = "sip:alice@203.0.113.1:5070"
		ct     = "Contact: "
		expHdr = "Expires: 0"
	)
	type istep struct {
		req      req
		code     int
		want     []string // Lookup as "uri instance reg-id", in order
		contacts []string // URIs of the 200's Contact lines, in order
	}
	for _, tc := range []struct {
		name  string
		steps []istep
	}{
		{"refresh with changed contact, same instance", []istep{
			{req: req{hdrs: []string{ct + "<" + priv + ">" + x}}, code: 200,
				want: []string{priv + " " + instX + " 0"}, contacts: []string{priv}},
			{req: req{cseq: 2, hdrs: []string{ct + "<" + pub + ">" + x}}, code: 200,
				want: []string{pub + " " + instX + " 0"}, contacts: []string{pub}},
			// Another Call-ID (the phone rebooted) names the same binding.
			{req: req{callID: "reboot@ua", hdrs: []string{ct + "<" + pub2 + ">" + x}}, code: 200,
				want: []string{pub2 + " " + instX + " 0"}, contacts: []string{pub2}},
		}},
		{"de-register with Expires: 0 and changed contact", []istep{
			{req: req{hdrs: []string{ct + "<" + priv + ">" + x}}, code: 200,
				want: []string{priv + " " + instX + " 0"}, contacts: []string{priv}},
			{req: req{cseq: 2, hdrs: []string{ct + "<" + pub + ">" + x, expHdr}}, code: 200,
				want: []string{}, contacts: nil},
		}},
		{"de-register with ;expires=0 and changed contact", []istep{
			{req: req{hdrs: []string{ct + "<" + priv + ">" + x}}, code: 200,
				want: []string{priv + " " + instX + " 0"}, contacts: []string{priv}},
			{req: req{callID: "other@ua", hdrs: []string{ct + "<" + pub2 + ">" + y}}, code: 200,
				want:     []string{pub2 + " " + instY + " 0", priv + " " + instX + " 0"},
				contacts: []string{pub2, priv}},
			{req: req{cseq: 2, hdrs: []string{ct + "<" + pub + ">" + x + ";expires=0"}}, code: 200,
				want: []string{pub2 + " " + instY + " 0"}, contacts: []string{pub2}},
			// Removing it again changes nothing.
			{req: req{cseq: 3, hdrs: []string{ct + "<" + pub + ">" + x + ";expires=0"}}, code: 200,
				want: []string{pub2 + " " + instY + " 0"}, contacts: []string{pub2}},
		}},
		{"instance with reg-id: instance and reg-id, as before", []istep{
			{req: req{hdrs: []string{ct + "<" + priv + ">" + x + ";reg-id=1"}}, code: 200,
				want: []string{priv + " " + instX + " 1"}, contacts: []string{priv}},
			{req: req{cseq: 2, hdrs: []string{ct + "<" + pub + ">" + x + ";reg-id=1"}}, code: 200,
				want: []string{pub + " " + instX + " 1"}, contacts: []string{pub}},
			// A second flow, even with the same URI.
			{req: req{cseq: 3, hdrs: []string{ct + "<" + pub + ">" + x + ";reg-id=2"}}, code: 200,
				want: []string{pub + " " + instX + " 2", pub + " " + instX + " 1"}, contacts: []string{pub, pub}},
			// Without reg-id the instance names another binding than its flows.
			{req: req{cseq: 4, hdrs: []string{ct + "<" + pub2 + ">" + x}}, code: 200,
				want:     []string{pub2 + " " + instX + " 0", pub + " " + instX + " 2", pub + " " + instX + " 1"},
				contacts: []string{pub2, pub, pub}},
			// A flow is removed by instance and reg-id whatever the URI.
			{req: req{cseq: 5, hdrs: []string{ct + "<" + priv + ">" + x + ";reg-id=1;expires=0"}}, code: 200,
				want: []string{pub2 + " " + instX + " 0", pub + " " + instX + " 2"}, contacts: []string{pub2, pub}},
			// The binding without reg-id is not a flow of reg-id 3.
			{req: req{cseq: 6, hdrs: []string{ct + "<" + pub2 + ">" + x + ";reg-id=3;expires=0"}}, code: 200,
				want: []string{pub2 + " " + instX + " 0", pub + " " + instX + " 2"}, contacts: []string{pub2, pub}},
		}},
		{"two instances, two bindings", []istep{
			{req: req{hdrs: []string{ct + "<" + priv + ">" + x}}, code: 200},
			{req: req{callID: "y@ua", hdrs: []string{ct + "<sip:alice@10.0.0.6:5060>" + y}}, code: 200,
				want: []string{"sip:alice@10.0.0.6:5060 " + instY + " 0", priv + " " + instX + " 0"}},
			{req: req{cseq: 2, hdrs: []string{ct + "<" + pub + ">" + x}}, code: 200,
				want:     []string{pub + " " + instX + " 0", "sip:alice@10.0.0.6:5060 " + instY + " 0"},
				contacts: []string{pub, "sip:alice@10.0.0.6:5060"}},
		}},
		// Distinct instances are distinct user agents (RFC 5627 §6), so
		// distinct bindings, even with one URI (two phones behind one
		// NAT that rewrote both Contacts alike).
		{"same URI, different instances", []istep{
			{req: req{hdrs: []string{ct + "<" + pub + ">" + x}}, code: 200},
			{req: req{callID: "y@ua", hdrs: []string{ct + "<" + pub + ">" + y}}, code: 200,
				want: []string{pub + " " + instY + " 0", pub + " " + instX + " 0"}, contacts: []string{pub, pub}},
			{req: req{callID: "y@ua", cseq: 2, hdrs: []string{ct + "<" + pub + ">" + y, expHdr}}, code: 200,
				want: []string{pub + " " + instX + " 0"}, contacts: []string{pub}},
		}},
		{"no instance: URI identity, as before", []istep{
			{req: req{hdrs: []string{ct + "<" + priv + ">"}}, code: 200},
			{req: req{cseq: 2, hdrs: []string{ct + "<" + pub + ">"}}, code: 200,
				want: []string{pub + "  0", priv + "  0"}, contacts: []string{pub, priv}},
			{req: req{cseq: 3, hdrs: []string{ct + "<sip:alice@10.0.0.5>;expires=0"}}, code: 200, // port differs: another URI
				want: []string{pub + "  0", priv + "  0"}},
			{req: req{cseq: 4, hdrs: []string{ct + "<sip:alice@10.0.0.5:5060;transport=udp>;expires=0"}}, code: 200, // nor equal by §19.1.4
				want: []string{pub + "  0", priv + "  0"}},
			{req: req{cseq: 5, hdrs: []string{ct + "<sip:alice@10.0.0.5:5060>;expires=0"}}, code: 200,
				want: []string{pub + "  0"}, contacts: []string{pub}},
		}},
		{"a binding without instance takes the instance named for its URI", []istep{
			{req: req{hdrs: []string{ct + "<" + priv + ">"}}, code: 200},
			{req: req{cseq: 2, hdrs: []string{ct + "<" + priv + ">" + x}}, code: 200,
				want: []string{priv + " " + instX + " 0"}, contacts: []string{priv}},
			// Now that it belongs to X, Y with the same URI is another binding.
			{req: req{callID: "y@ua", hdrs: []string{ct + "<" + priv + ">" + y}}, code: 200,
				want: []string{priv + " " + instY + " 0", priv + " " + instX + " 0"}},
		}},
		{"Call-ID and CSeq rule holds for an instance match", []istep{
			{req: req{cseq: 5, hdrs: []string{ct + "<" + priv + ">" + x}}, code: 200},
			{req: req{cseq: 5, hdrs: []string{ct + "<" + pub + ">" + x}}, code: 500,
				want: []string{priv + " " + instX + " 0"}},
			{req: req{cseq: 4, hdrs: []string{ct + "<" + pub + ">" + x, expHdr}}, code: 500,
				want: []string{priv + " " + instX + " 0"}},
		}},
		{"one request, one instance twice: the last contact wins", []istep{
			{req: req{hdrs: []string{ct + "<" + priv + ">" + x, ct + "<" + pub + ">" + x}}, code: 200,
				want: []string{pub + " " + instX + " 0"}, contacts: []string{pub}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clk := newClock()
			open := func() (*store.Store, *Registrar) {
				st, err := store.Open(dir, store.Options{Logger: quiet, NoSync: true})
				if err != nil {
					t.Fatal(err)
				}
				return st, newRegistrar(t, Config{Store: st, Now: clk.Now})
			}
			st, r := open()
			for i, s := range tc.steps {
				clk.Advance(time.Second)
				from := netip.AddrPortFrom(netip.MustParseAddr("203.0.113.1"), uint16(40000+i))
				res := r.Register(Request{Msg: parse(t, s.req.text()), Source: from, Local: local, Proto: transport.UDP, NAT: true})
				if res.Commit != nil {
					ch := make(chan error, 1)
					res.Commit.Then(func(err error) { ch <- err })
					if err := <-ch; err != nil {
						t.Fatal(err)
					}
				}
				if res.Code != s.code {
					t.Fatalf("step %d: %d %s, want %d", i, res.Code, res.Reason, s.code)
				}
				bs := r.Lookup(alice)
				var got []string
				for _, b := range bs {
					got = append(got, fmt.Sprintf("%s %s %d", b.URI, b.Instance, b.RegID))
				}
				if s.want != nil && !slices.Equal(got, s.want) && !(len(got) == 0 && len(s.want) == 0) {
					t.Fatalf("step %d: bindings\n got %q\nwant %q", i, got, s.want)
				}
				if res.Code == 200 {
					// The 200 lists the bindings Lookup sees, in order.
					var lines, uris []string
					for _, l := range contactLines(res.Extra) {
						lines = append(lines, l)
						uris = append(uris, l[1:strings.IndexByte(l, '>')])
					}
					if len(lines) != len(bs) {
						t.Fatalf("step %d: 200 lists %q, Lookup has %d bindings", i, lines, len(bs))
					}
					for j, b := range bs {
						if uris[j] != b.URI || !strings.Contains(lines[j], b.Params+";expires=") {
							t.Errorf("step %d: 200 contact %q for binding %s%s", i, lines[j], b.URI, b.Params)
						}
					}
					if s.contacts != nil && !slices.Equal(uris, s.contacts) {
						t.Errorf("step %d: 200 contacts %q, want %q", i, uris, s.contacts)
					}
				}
				// Keep-alive targets are exactly the bindings, with the
				// source of the REGISTER that last wrote each.
				var nat []string
				r.RangeNAT(func(aor, uri string, src netip.AddrPort, _ time.Time) { nat = append(nat, uri+" "+src.String()) })
				var wantNAT []string
				for _, b := range bs {
					wantNAT = append(wantNAT, b.URI+" "+b.Source.String())
				}
				slices.Sort(nat)
				slices.Sort(wantNAT)
				if !slices.Equal(nat, wantNAT) {
					t.Errorf("step %d: RangeNAT %q, want %q", i, nat, wantNAT)
				}
				if _, n := r.Count(); n != len(bs) {
					t.Errorf("step %d: Count %d bindings, Lookup %d", i, n, len(bs))
				}
				// A restart loads the same bindings from the store.
				r.Close()
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
				st, r = open()
				if after := r.Lookup(alice); fmt.Sprint(after) != fmt.Sprint(bs) {
					t.Fatalf("step %d: after restart\n got %+v\nwant %+v", i, after, bs)
				}
			}
			r.Close()
			st.Close()
		})
	}
}

// TestRefreshAllocs: a refresh that repeats its contact allocates only the
// 200's header block, and with a store its Commit, whether the binding is
// found by URI or by +sip.instance (with or without reg-id).
func TestRefreshAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector allocates")
	}
	for _, withStore := range []bool{false, true} {
		for _, cparams := range []string{
			"",
			`;+sip.instance="<urn:uuid:00000000-0000-1000-8000-0000UUUUUUUU>"`,
			`;+sip.instance="<urn:uuid:00000000-0000-1000-8000-0000UUUUUUUU>";reg-id=1`,
		} {
			refreshAllocs(t, withStore, cparams)
		}
	}
}

func refreshAllocs(t *testing.T, withStore bool, cparams string) {
	cfg, want := Config{}, 1.0
	if withStore {
		st, err := store.Open(t.TempDir(), store.Options{Logger: quiet, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		cfg.Store, want = st, 2
	}
	r := newRegistrar(t, cfg)
	s := newSynthContact(cparams, "")
	const aors = 64
	for u := range aors {
		req := benchReq
		req.Msg = s.set(u, 1)
		if res := r.Register(req); res.Code != 200 {
			t.Fatal(res.Code, res.Reason)
		}
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		req := benchReq
		req.Msg = s.set(i%aors, 1+i)
		if res := r.Register(req); res.Code != 200 || res.Commit == nil {
			t.Fatal(res.Code, res.Reason)
		}
	})
	if s.lastErr != nil {
		t.Fatal(s.lastErr)
	}
	if _, n := r.Count(); n != aors {
		t.Fatalf("contact %q: %d bindings after the refreshes, want %d", cparams, n, aors)
	}
	if allocs > want {
		t.Errorf("store %v, contact %q: a refresh allocates %v times, want %v", withStore, cparams, allocs, want)
	}
}
