package registrar

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"sipedge/transport"
)

// seedRecords returns binding sets as the registrar stores them, made by
// real REGISTERs: plain, several contacts with q, +sip.instance with and
// without reg-id, Path, NAT, IPv6 with a zone, TCP with a connection; and
// the version 1 form of one of them.
func seedRecords(tb testing.TB) [][]byte {
	clk := newClock()
	r := newRegistrar(tb, Config{Now: clk.Now})
	type one struct {
		to   string
		hdrs []string
		req  Request
	}
	udp := Request{Source: src, Local: local, Proto: transport.UDP}
	for i, o := range []one{
		{"<sip:alice@example.com>", []string{"Contact: <sip:alice@192.0.2.20:5060>"}, udp},
		{"<sip:bob@example.com>", []string{"User-Agent: Yealink SIP-T46S 66.86.0.15",
			"Contact: <sip:bob@10.0.0.5:5060;transport=tcp>;q=0.5;expires=120",
			"Contact: <sip:bob@198.51.100.9>;foo=bar;q=0.125",
			`Contact: <sip:bob@10.0.0.6:5060>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"`},
			Request{Source: netip.MustParseAddrPort("203.0.113.1:40000"), Local: local, Proto: transport.UDP, NAT: true}},
		{"<sip:carol@example.com>", []string{"Supported: outbound, path",
			"Path: <sip:edge1.example.net;lr;ob>", "Path: <sip:edge2.example.net;lr>",
			`Contact: <sip:carol@198.51.100.7:40000;transport=tcp;ob>;+sip.instance="<urn:uuid:1>";reg-id=1`,
			`Contact: <sip:carol@198.51.100.7:40002;transport=tcp;ob>;+sip.instance="<urn:uuid:1>";reg-id=2147483647`},
			Request{Source: netip.MustParseAddrPort("[2001:db8::7%eth0]:50000"), Local: netip.MustParseAddrPort("[2001:db8::1]:5061"), Proto: transport.TLS, ConnID: 9}},
		{"<sip:null-%00-null@example.com>", []string{"Contact: <sip:%00@host5.example.com>;expires=4294967295"},
			Request{Source: netip.MustParseAddrPort("[::ffff:192.0.2.1]:5060"), Proto: transport.TCP}},
	} {
		m := parse(tb, req{to: o.to, cseq: 1 + i*1000, hdrs: o.hdrs}.text())
		rq := o.req
		rq.Msg = m
		if res := r.Register(rq); res.Code != 200 {
			tb.Fatalf("seed %d: %d %s", i, res.Code, res.Reason)
		}
	}
	var recs [][]byte
	for i := range r.shards {
		for _, a := range r.shards[i].aors {
			recs = append(recs, r.appendSet(nil, a.bs))
		}
	}
	slices.SortFunc(recs, bytes.Compare)
	if len(recs) != 4 {
		tb.Fatalf("%d seed records", len(recs))
	}
	// A binding taken by a node of a cluster carries its owner.
	rn := newRegistrar(tb, Config{Now: clk.Now, Node: "192.0.2.2:5060"})
	m := parse(tb, req{to: "<sip:dave@example.com>", hdrs: []string{"Contact: <sip:dave@10.0.0.9:5060>"}}.text())
	if res := rn.Register(Request{Msg: m, Source: src, Local: local, Proto: transport.UDP, NAT: true}); res.Code != 200 {
		tb.Fatalf("owned seed: %d %s", res.Code, res.Reason)
	}
	owned := rn.shardOf([]byte("sip:dave@example.com")).aors["sip:dave@example.com"]
	if owned.bs[0].owner == 0 {
		tb.Fatal("a cluster node's binding has no owner")
	}
	recs = append(recs, rn.appendSet(nil, owned.bs))
	v2 := bytes.Clone(recs[0]) // one binding: drop its (empty) owner
	v2[0], v2 = 2, v2[:len(v2)-1]
	v1 := bytes.Clone(v2) // and its flags
	v1[0], v1 = 1, v1[:len(v1)-1]
	return append(recs, v2, v1)
}

// checkBindings: what a decoded record holds is something Register could
// have written.
func checkBindings(t *testing.T, bs []binding) {
	t.Helper()
	for i := range bs {
		b := &bs[i]
		const ms = int64(time.Millisecond)
		if b.q > 1000 || b.regID < 0 || b.expires%ms != 0 || b.updated%ms != 0 {
			t.Fatalf("binding %d out of range: q %d reg-id %d expires %d updated %d", i, b.q, b.regID, b.expires, b.updated)
		}
		if int(b.uriLen)+int(b.parLen) > len(b.contact) {
			t.Fatalf("binding %d: contact split %d+%d of %d bytes", i, b.uriLen, b.parLen, len(b.contact))
		}
	}
}

// FuzzDecodeSet: a stored record, however damaged, decodes or is refused
// without a panic; what decodes is in range, and encodes to a record that
// decodes to the same bindings and re-encodes to the same bytes.
//
//	go test -run '^$' -fuzz '^FuzzDecodeSet$' -fuzztime 60s ./registrar/
func FuzzDecodeSet(f *testing.F) {
	for _, rec := range seedRecords(f) {
		f.Add(rec)
	}
	f.Add([]byte{})
	f.Add([]byte{recordVersion, 0})
	f.Add([]byte{recordVersion, 5, 1, 2})
	f.Add([]byte{99})
	// Expires in ms whose ns value overflows int64 (it used to decode to
	// a wrapped time that changed on the next write).
	ovf := append([]byte{recordVersion, 1}, 0, 0, 0, 0, 0, 0)
	ovf = binary.AppendVarint(ovf, 12345678901234567)
	ovf = binary.AppendVarint(ovf, 0)
	f.Add(append(ovf, 0, 0, 0, 1, 0, 0, 0))
	f.Fuzz(func(t *testing.T, val []byte) {
		r := &Registrar{}
		sh := &shard{ua: map[string]string{}}
		bs, err := r.decodeSet(val, sh)
		if err != nil {
			if bs != nil {
				t.Fatal("bindings along with an error")
			}
			return
		}
		checkBindings(t, bs)
		for i := range bs {
			if pb := r.public(&bs[i], "sip:k@example.com"); pb.URI+pb.Params+pb.Instance != bs[i].contact {
				t.Fatalf("binding %d: contact split %q %q %q", i, pb.URI, pb.Params, pb.Instance)
			}
		}
		enc := r.appendSet(nil, bs)
		bs2, err := r.decodeSet(enc, sh)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v\n%x", err, enc)
		}
		if !slices.Equal(bs, bs2) {
			t.Fatalf("round trip changed the bindings:\n%+v\n%+v", bs, bs2)
		}
		if enc2 := r.appendSet(nil, bs2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%x\n%x", enc, enc2)
		}
	})
}

// TestRecordRoundTrip: the seed records decode and re-encode byte for
// byte (the version 1 and 2 ones as version 3, with flags 0 and no owner).
func TestRecordRoundTrip(t *testing.T) {
	recs := seedRecords(t)
	r := &Registrar{}
	sh := &shard{ua: map[string]string{}}
	for i, rec := range recs {
		bs, err := r.decodeSet(rec, sh)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		checkBindings(t, bs)
		enc := r.appendSet(nil, bs)
		want := rec
		switch rec[0] {
		case 1: // flags 0, owner ""
			want = append(append([]byte{recordVersion}, rec[1:]...), 0, 0)
		case 2: // owner ""
			want = append(append([]byte{recordVersion}, rec[1:]...), 0)
		}
		if !bytes.Equal(enc, want) {
			t.Errorf("record %d:\n got %x\nwant %x", i, enc, want)
		}
	}
}
