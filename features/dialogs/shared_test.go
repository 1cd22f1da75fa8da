package dialogs

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"sipedge/proxy"
	"sipedge/transport"
)

func sampleDialog() *dialog {
	callKey := string(proxy.AppendKey(nil, []byte("call-1@host"), []byte("a1")))
	return &dialog{
		key:     string(proxy.AppendKey(nil, []byte("call-1@host"), []byte("a1"), []byte("b1"))),
		callKey: callKey, callID: "call-1@host",
		from: "<sip:alice@example.com>;tag=a1", to: "<sip:bob@example.com>;tag=b1",
		interval: 90 * time.Second, expires: time.UnixMilli(1_800_000_000_123),
		legs: [2]leg{
			{target: proxy.Target{Proto: transport.UDP, Addr: netip.MustParseAddrPort("192.0.2.1:5060"), NAT: true},
				ruri: "sip:alice@10.0.0.5:5060", cseq: 7},
			{target: proxy.Target{Proto: transport.TLS, Addr: netip.MustParseAddrPort("[2001:db8::1]:5061")},
				ruri: "sip:bob@pbx.example.com;transport=tls", cseq: 1 << 31,
				routes: []string{"<sip:p1.example.com;lr>", "<sip:p2.example.com;lr;ftag=x>"}},
		},
	}
}

// A record reads back as the dialog it was written from, and every
// truncation of it is refused.
func TestDialogRecordRoundTrip(t *testing.T) {
	d := sampleDialog()
	rec := d.encode(nil)
	got, err := decodeDialog(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, d)
	}
	for i := range rec {
		if _, err := decodeDialog(rec[:i]); err == nil {
			t.Fatalf("a record cut at %d of %d decoded", i, len(rec))
		}
	}
	if _, err := decodeDialog(append(bytes.Clone(rec), 0)); err == nil {
		t.Fatal("a record with a trailing byte decoded")
	}
	bad := bytes.Clone(rec)
	bad[0] = 9
	if _, err := decodeDialog(bad); err == nil {
		t.Fatal("a record of another version decoded")
	}
}

// A dialog whose header values do not fit the record is not shared.
func TestDialogTooLargeNotShared(t *testing.T) {
	d := sampleDialog()
	d.from = string(make([]byte, maxField+1))
	if d.fits() {
		t.Fatal("a From of 64 KiB fits")
	}
}

func FuzzDecodeDialog(f *testing.F) {
	f.Add(sampleDialog().encode(nil))
	f.Add([]byte{recordVersion})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDialog(b)
		if err != nil {
			return
		}
		// What decodes encodes back to the same bytes.
		if again := d.encode(nil); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded differently:\n%x\n%x", b, again)
		}
	})
}
