package gateway

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/transport"
)

func sampleBinding() *binding {
	pb := &binding{
		contact: []byte("sip:alice@10.0.0.5:5060;transport=udp"),
		expires: time.UnixMilli(1_800_000_000_000),
		aor:     "alice@provider.example",
		local:   netip.MustParseAddrPort("203.0.113.1:5060"),
		proto:   transport.UDP,
	}
	pb.target = proxy.Target{Proto: transport.UDP, Addr: netip.MustParseAddrPort("198.51.100.7:40000"), NAT: true, URI: pb.contact}
	return pb
}

func TestRecordRoundTrip(t *testing.T) {
	for _, pb := range []*binding{sampleBinding(), func() *binding {
		b := sampleBinding()
		b.target = proxy.Target{Proto: transport.TLS, Addr: netip.MustParseAddrPort("[2001:db8::5]:5061"), URI: b.contact}
		b.local, b.proto, b.aor = netip.MustParseAddrPort("[2001:db8::1]:5061"), transport.TLS, ""
		return b
	}()} {
		got, err := decode(encode(nil, pb))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, pb) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, pb)
		}
	}
	good := encode(nil, sampleBinding())
	for i := 0; i < len(good); i++ {
		if _, err := decode(good[:i]); err == nil {
			t.Fatalf("a record cut at %d bytes decoded", i)
		}
	}
	bad := append([]byte(nil), good...)
	bad[0] = 9
	if _, err := decode(bad); err == nil {
		t.Fatal("unknown version decoded")
	}
}

// FuzzDecode: no stored record, however damaged, panics the loader; what
// decodes encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(encode(nil, sampleBinding()))
	b := sampleBinding()
	b.target.NAT, b.aor = false, ""
	f.Add(encode(nil, b))
	f.Add([]byte{recordVersion})
	f.Fuzz(func(t *testing.T, data []byte) {
		pb, err := decode(data)
		if err != nil {
			return
		}
		if again := encode(nil, pb); string(again) != string(data) {
			t.Fatalf("decode then encode changed the record:\n%x\n%x", data, again)
		}
	})
}
