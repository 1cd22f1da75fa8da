package sip

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"sipedge/internal/race"
)

// editBase is the request most edit tests start from.
const editBase = "INVITE sip:bob@biloxi.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: Bob <sip:bob@biloxi.com>\r\n" +
	"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Contact: <sip:alice@pc33.atlanta.com>\r\n" +
	"Content-Length: 0\r\n" +
	"\r\n"

// editNoMF is editBase without Max-Forwards.
var editNoMF = strings.Replace(editBase, "Max-Forwards: 70\r\n", "", 1)

// editRep is strings.Replace(s, old, new, 1) that fails loudly when old is
// missing, so a typo in a golden string cannot make a test vacuous.
func editRep(s, old, new string) string {
	if !strings.Contains(s, old) {
		panic("golden: " + old + " not in message")
	}
	return strings.Replace(s, old, new, 1)
}

const (
	editViaLine = "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n"
	editNewVia  = "SIP/2.0/UDP proxy.example.com:5060;branch=z9hG4bKp1"
)

func TestEditNoEditsByteIdentical(t *testing.T) {
	for _, msg := range []string{
		editBase,
		editNoMF,
		string(tblMsg("SIP/2.0 180 Ringing", tblRespHdrs, "")),
		string(tblMsg(tblInviteLine, tblWith(tblReqHdrs[:7], "Subject: folded\r\n\tvalue", "l: 5"), "hello")),
		"\r\n" + editBase, // leading CRLF kept as received
	} {
		var m Message
		if err := m.Parse([]byte(msg), nil); err != nil {
			t.Fatalf("%v\n%s", err, msg)
		}
		out := m.AppendTo(nil)
		if string(out) != msg || m.Len() != len(msg) || m.Edited() {
			t.Errorf("no-edit output differs (Len %d, Edited %v):\n%q\nwant\n%q", m.Len(), m.Edited(), out, msg)
		}
		if string(m.AppendTo([]byte("prefix|"))) != "prefix|"+msg {
			t.Error("AppendTo does not append to dst")
		}
	}
	// Bytes after Content-Length in a datagram are never written.
	var m Message
	if err := m.Parse([]byte(editBase+"trailing junk"), nil); err != nil {
		t.Fatal(err)
	}
	eq(t, "AppendTo without trailing bytes", m.AppendTo(nil), editBase)
}

func TestEditTable(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		edit  func(t *testing.T, m *Message) // must schedule edits without error
		want  string
		check func(t *testing.T, m *Message) // on the re-parsed result
	}{
		{
			name: "insert Via before the first Via",
			in:   editBase,
			edit: func(t *testing.T, m *Message) {
				editMust(t, m.InsertHeader(m.Find(KindVia), "Via", []byte(editNewVia)))
			},
			want: editRep(editBase, editViaLine, "Via: "+editNewVia+"\r\n"+editViaLine),
			check: func(t *testing.T, m *Message) {
				vias := allVias(t, m)
				if len(vias) != 2 || m.NumVias() != 2 {
					t.Fatalf("%d vias", len(vias))
				}
				eq(t, "top via host", vias[0].Host, "proxy.example.com")
				eq(t, "second via branch", vias[1].Branch, "z9hG4bK776asdhds")
			},
		},
		{
			name: "SetMaxForwards with the header present",
			in:   editBase,
			edit: func(t *testing.T, m *Message) { editMust(t, m.SetMaxForwards(69)) },
			want: editRep(editBase, "Max-Forwards: 70\r\n", "Max-Forwards: 69\r\n"),
			check: func(t *testing.T, m *Message) {
				if n, ok := m.MaxForwards(); n != 69 || !ok {
					t.Errorf("Max-Forwards %d %v", n, ok)
				}
			},
		},
		{
			name: "SetMaxForwards widens the value",
			in:   editRep(editBase, "Max-Forwards: 70", "Max-Forwards: 5"),
			edit: func(t *testing.T, m *Message) { editMust(t, m.SetMaxForwards(100)) },
			want: editRep(editBase, "Max-Forwards: 70", "Max-Forwards: 100"),
			check: func(t *testing.T, m *Message) {
				if n, _ := m.MaxForwards(); n != 100 {
					t.Errorf("Max-Forwards %d", n)
				}
			},
		},
		{
			name: "SetMaxForwards without the header adds it first",
			in:   editNoMF,
			edit: func(t *testing.T, m *Message) { editMust(t, m.SetMaxForwards(70)) },
			want: editRep(editNoMF, "SIP/2.0\r\n", "SIP/2.0\r\nMax-Forwards: 70\r\n"),
			check: func(t *testing.T, m *Message) {
				if n, ok := m.MaxForwards(); n != 70 || !ok {
					t.Errorf("Max-Forwards %d %v", n, ok)
				}
				if m.HeaderKind(0) != KindMaxForwards {
					t.Errorf("first header is %v", m.HeaderKind(0))
				}
			},
		},
		{
			name: "replace the Request-URI",
			in:   editBase,
			edit: func(t *testing.T, m *Message) {
				s, e := m.RequestURISpan()
				editMust(t, m.Replace(s, e, []byte("sip:bob@192.0.2.4:5062;transport=udp")))
			},
			want: editRep(editBase, "INVITE sip:bob@biloxi.com SIP/2.0", "INVITE sip:bob@192.0.2.4:5062;transport=udp SIP/2.0"),
			check: func(t *testing.T, m *Message) {
				u, err := m.RequestURI()
				if err != nil || string(u.Host) != "192.0.2.4" || u.Port != 5062 {
					t.Errorf("Request-URI %q %v", m.RequestURIBytes(), err)
				}
			},
		},
		{
			name: "delete a header",
			in:   editBase,
			edit: func(t *testing.T, m *Message) { editMust(t, m.DeleteHeader(m.Find(KindContact))) },
			want: editRep(editBase, "Contact: <sip:alice@pc33.atlanta.com>\r\n", ""),
			check: func(t *testing.T, m *Message) {
				if m.Count(KindContact) != 0 || m.NumHeaders() != 7 {
					t.Errorf("Contact count %d, %d headers", m.Count(KindContact), m.NumHeaders())
				}
			},
		},
		{
			name: "SetHeaderValue",
			in:   editBase,
			edit: func(t *testing.T, m *Message) {
				editMust(t, m.SetHeaderValue(m.Find(KindTo), []byte("Carol <sip:carol@chicago.com>;tag=c1")))
			},
			want: editRep(editBase, "To: Bob <sip:bob@biloxi.com>", "To: Carol <sip:carol@chicago.com>;tag=c1"),
			check: func(t *testing.T, m *Message) {
				to, err := m.To()
				if err != nil || string(to.Tag) != "c1" || string(to.URI.User) != "carol" {
					t.Errorf("To %q %v", m.Get(KindTo), err)
				}
			},
		},
		{
			name: "append a header after the last one",
			in:   editBase,
			edit: func(t *testing.T, m *Message) {
				editMust(t, m.InsertHeader(m.NumHeaders(), "Record-Route", []byte("<sip:p1.example.com;lr>")))
			},
			want: editRep(editBase, "Content-Length: 0\r\n\r\n", "Content-Length: 0\r\nRecord-Route: <sip:p1.example.com;lr>\r\n\r\n"),
			check: func(t *testing.T, m *Message) {
				eq(t, "record-route", m.Get(KindRecordRoute), "<sip:p1.example.com;lr>")
				if m.Find(KindRecordRoute) != m.NumHeaders()-1 {
					t.Error("Record-Route not last")
				}
			},
		},
		{
			name: "add received and rport to the top Via (RFC 3581)",
			in:   editRep(editBase, "pc33.atlanta.com;branch", "10.0.0.1;rport;branch"),
			edit: func(t *testing.T, m *Message) {
				s, e, ok := m.TopViaSpan()
				if !ok {
					t.Fatal("no top via")
				}
				via := m.Bytes()[s:e]
				r := bytes.Index(via, []byte(";rport")) + s
				editMust(t, m.Replace(r, r+len(";rport"), []byte(";rport=5070")))
				editMust(t, m.Insert(e, []byte(";received=192.0.2.1")))
			},
			want: editRep(editBase, "pc33.atlanta.com;branch=z9hG4bK776asdhds", "10.0.0.1;rport=5070;branch=z9hG4bK776asdhds;received=192.0.2.1"),
			check: func(t *testing.T, m *Message) {
				v, err := m.TopVia()
				if err != nil || v.RPort != 5070 || string(v.Received) != "192.0.2.1" {
					t.Errorf("via %+v %v", v, err)
				}
			},
		},
		{
			name: "replace the body and its Content-Length",
			in:   editBase,
			edit: func(t *testing.T, m *Message) {
				editMust(t, m.SetHeaderValue(m.Find(KindContentLength), []byte("5")))
				editMust(t, m.Insert(m.BodyOffset(), []byte("hello")))
			},
			want: editRep(editBase, "Content-Length: 0\r\n\r\n", "Content-Length: 5\r\n\r\nhello"),
			check: func(t *testing.T, m *Message) {
				eq(t, "body", m.Body(), "hello")
			},
		},
		{
			name: "several edits applied in offset order whatever the call order",
			in:   editBase,
			edit: func(t *testing.T, m *Message) {
				editMust(t, m.DeleteHeader(m.Find(KindContact)))
				editMust(t, m.SetMaxForwards(69))
				editMust(t, m.InsertHeader(m.NumHeaders(), "Record-Route", []byte("<sip:p1.example.com;lr>")))
				editMust(t, m.InsertHeader(m.Find(KindVia), "Via", []byte(editNewVia)))
				s, e := m.RequestURISpan()
				editMust(t, m.Replace(s, e, []byte("sip:bob@192.0.2.4")))
			},
			want: "INVITE sip:bob@192.0.2.4 SIP/2.0\r\n" +
				"Via: " + editNewVia + "\r\n" +
				"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n" +
				"Max-Forwards: 69\r\n" +
				"To: Bob <sip:bob@biloxi.com>\r\n" +
				"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n" +
				"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n" +
				"CSeq: 314159 INVITE\r\n" +
				"Content-Length: 0\r\n" +
				"Record-Route: <sip:p1.example.com;lr>\r\n" +
				"\r\n",
			check: func(t *testing.T, m *Message) {
				if m.NumVias() != 2 || m.Count(KindContact) != 0 || m.Count(KindRecordRoute) != 1 {
					t.Errorf("vias %d contacts %d rr %d", m.NumVias(), m.Count(KindContact), m.Count(KindRecordRoute))
				}
				if n, _ := m.MaxForwards(); n != 69 {
					t.Errorf("Max-Forwards %d", n)
				}
			},
		},
		{
			name: "two insertions at the same offset keep call order",
			in:   editBase,
			edit: func(t *testing.T, m *Message) {
				v := m.Find(KindVia)
				editMust(t, m.InsertHeader(v, "Via", []byte("SIP/2.0/UDP first.example.com;branch=z9hG4bKf")))
				editMust(t, m.InsertHeader(v, "Via", []byte("SIP/2.0/UDP second.example.com;branch=z9hG4bKs")))
				editMust(t, m.InsertHeader(v, "Via", []byte("SIP/2.0/UDP third.example.com;branch=z9hG4bKt")))
			},
			want: editRep(editBase, editViaLine, "Via: SIP/2.0/UDP first.example.com;branch=z9hG4bKf\r\n"+
				"Via: SIP/2.0/UDP second.example.com;branch=z9hG4bKs\r\n"+
				"Via: SIP/2.0/UDP third.example.com;branch=z9hG4bKt\r\n"+editViaLine),
			check: func(t *testing.T, m *Message) {
				var hosts []string
				for _, v := range allVias(t, m) {
					hosts = append(hosts, string(v.Host))
				}
				eq(t, "via order", strings.Join(hosts, ","), "first.example.com,second.example.com,third.example.com,pc33.atlanta.com")
			},
		},
		{
			name: "SetMaxForwards and InsertHeader(0) at the same offset keep call order",
			in:   editNoMF,
			edit: func(t *testing.T, m *Message) {
				editMust(t, m.InsertHeader(0, "Via", []byte(editNewVia)))
				editMust(t, m.SetMaxForwards(70))
			},
			want: editRep(editNoMF, "SIP/2.0\r\n", "SIP/2.0\r\nVia: "+editNewVia+"\r\nMax-Forwards: 70\r\n"),
			check: func(t *testing.T, m *Message) {
				if m.HeaderKind(0) != KindVia || m.HeaderKind(1) != KindMaxForwards {
					t.Errorf("first headers %v %v", m.HeaderKind(0), m.HeaderKind(1))
				}
			},
		},
		{
			name: "delete then insert at the same header replaces it",
			in:   editBase,
			edit: func(t *testing.T, m *Message) {
				c := m.Find(KindContact)
				editMust(t, m.DeleteHeader(c))
				editMust(t, m.InsertHeader(c, "Contact", []byte("<sip:alice@192.0.2.9>")))
			},
			want: editRep(editBase, "Contact: <sip:alice@pc33.atlanta.com>", "Contact: <sip:alice@192.0.2.9>"),
			check: func(t *testing.T, m *Message) {
				eq(t, "contact", m.Get(KindContact), "<sip:alice@192.0.2.9>")
			},
		},
		{
			name: "insert then delete at the same header replaces it",
			in:   editBase,
			edit: func(t *testing.T, m *Message) {
				c := m.Find(KindContact)
				editMust(t, m.InsertHeader(c, "Contact", []byte("<sip:alice@192.0.2.9>")))
				editMust(t, m.DeleteHeader(c))
			},
			want: editRep(editBase, "Contact: <sip:alice@pc33.atlanta.com>", "Contact: <sip:alice@192.0.2.9>"),
			check: func(t *testing.T, m *Message) {
				if m.Count(KindContact) != 1 {
					t.Errorf("%d contacts", m.Count(KindContact))
				}
			},
		},
		{
			name: "insertion right after a replaced range",
			in:   editBase,
			edit: func(t *testing.T, m *Message) {
				s, e := m.RequestURISpan()
				editMust(t, m.Insert(e, []byte(";lr")))
				editMust(t, m.Replace(s, e, []byte("sip:p1.example.com")))
			},
			want: editRep(editBase, "INVITE sip:bob@biloxi.com SIP/2.0", "INVITE sip:p1.example.com;lr SIP/2.0"),
			check: func(t *testing.T, m *Message) {
				eq(t, "ruri", m.RequestURIBytes(), "sip:p1.example.com;lr")
			},
		},
		{
			name: "adjacent replacements",
			in:   editBase,
			edit: func(t *testing.T, m *Message) {
				i := m.Find(KindCSeq)
				s, e := m.HeaderValueSpan(i)
				editMust(t, m.Replace(s+len("314159"), e, []byte(" ACK")))
				editMust(t, m.Replace(s, s+len("314159"), []byte("7")))
			},
			want:  editRep(editBase, "CSeq: 314159 INVITE", "CSeq: 7 ACK"),
			check: nil, // CSeq ACK on an INVITE is refused by Parse: bytes only
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			if err := m.Parse([]byte(tc.in), nil); err != nil {
				t.Fatal(err)
			}
			tc.edit(t, &m)
			if !m.Edited() {
				t.Error("Edited() false after edits")
			}
			out := m.AppendTo(nil)
			if string(out) != tc.want {
				t.Fatalf("edited:\n%q\nwant:\n%q", out, tc.want)
			}
			if m.Len() != len(out) {
				t.Errorf("Len() = %d, len(AppendTo) = %d", m.Len(), len(out))
			}
			// Writing twice gives the same bytes (sorting is idempotent)
			// and the received bytes are untouched.
			if again := m.AppendTo(nil); !bytes.Equal(again, out) {
				t.Errorf("second AppendTo differs:\n%q", again)
			}
			eq(t, "received bytes untouched", m.Bytes(), tc.in)
			if tc.check == nil {
				return
			}
			var r Message
			if err := r.Parse(out, nil); err != nil {
				t.Fatalf("edited message does not parse: %v\n%s", err, out)
			}
			tc.check(t, &r)
		})
	}
}

func editMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("edit: %v", err)
	}
}

func TestEditOverlap(t *testing.T) {
	var probe Message
	if err := probe.Parse([]byte(editBase), nil); err != nil {
		t.Fatal(err)
	}
	rs, re := probe.RequestURISpan() // "sip:bob@biloxi.com"
	n := len(editBase)
	type op struct{ s, e int } // s == e: insertion
	tests := []struct {
		name   string
		first  op
		second op
		ok     bool
	}{
		{"inside", op{rs, re}, op{rs + 1, re - 1}, false},
		{"same range", op{rs, re}, op{rs, re}, false},
		{"covering", op{rs + 2, re - 2}, op{rs, re}, false},
		{"straddling start", op{rs, re}, op{rs - 1, rs + 1}, false},
		{"straddling end", op{rs, re}, op{re - 1, re + 1}, false},
		{"insertion strictly inside", op{rs, re}, op{rs + 3, rs + 3}, false},
		{"range over an earlier insertion", op{rs + 3, rs + 3}, op{rs, re}, false},
		{"insertion at range start", op{rs, re}, op{rs, rs}, true},
		{"insertion at range end", op{rs, re}, op{re, re}, true},
		{"range starting at an insertion", op{rs, rs}, op{rs, re}, true},
		{"range ending at an insertion", op{re, re}, op{rs, re}, true},
		{"adjacent ranges", op{rs, rs + 4}, op{rs + 4, re}, true},
		{"disjoint ranges", op{0, 6}, op{rs, re}, true},
		{"two insertions same offset", op{rs, rs}, op{rs, rs}, true},
		{"insertion at end of message", op{0, 6}, op{n, n}, true},
		{"negative start", op{0, 6}, op{-1, 2}, false},
		{"end before start", op{0, 6}, op{rs + 2, rs + 1}, false},
		{"end past the message", op{0, 6}, op{n - 1, n + 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			if err := m.Parse([]byte(editBase), nil); err != nil {
				t.Fatal(err)
			}
			editMust(t, m.Replace(tc.first.s, tc.first.e, []byte("<1>")))
			want := editBase[:tc.first.s] + "<1>" + editBase[tc.first.e:]
			err := m.Replace(tc.second.s, tc.second.e, []byte("<2>"))
			if tc.ok {
				if err != nil {
					t.Fatalf("second edit refused: %v", err)
				}
				if m.Len() != len(want)+3-(tc.second.e-tc.second.s) {
					t.Errorf("Len %d", m.Len())
				}
				return
			}
			if !errors.Is(err, ErrEditOverlap) {
				t.Fatalf("second edit: %v, want ErrEditOverlap", err)
			}
			// A refused edit leaves no trace.
			if out := m.AppendTo(nil); string(out) != want || m.Len() != len(want) {
				t.Errorf("after refused edit:\n%q\nwant\n%q", out, want)
			}
		})
	}
	// Helpers report overlaps too.
	var m Message
	if err := m.Parse([]byte(editBase), nil); err != nil {
		t.Fatal(err)
	}
	editMust(t, m.SetMaxForwards(69))
	if err := m.SetMaxForwards(68); !errors.Is(err, ErrEditOverlap) {
		t.Errorf("second SetMaxForwards: %v", err)
	}
	c := m.Find(KindContact)
	editMust(t, m.DeleteHeader(c))
	if err := m.SetHeaderValue(c, []byte("<sip:x@y>")); !errors.Is(err, ErrEditOverlap) {
		t.Errorf("SetHeaderValue on a deleted header: %v", err)
	}
	eq(t, "after refused helpers", m.AppendTo(nil),
		editRep(editRep(editBase, "Max-Forwards: 70", "Max-Forwards: 69"), "Contact: <sip:alice@pc33.atlanta.com>\r\n", ""))
}

func TestEditResetEdits(t *testing.T) {
	var m Message
	if err := m.Parse([]byte(editBase), nil); err != nil {
		t.Fatal(err)
	}
	editMust(t, m.SetMaxForwards(1))
	editMust(t, m.InsertHeader(0, "Via", []byte(editNewVia)))
	editMust(t, m.DeleteHeader(m.Find(KindContact)))
	if !m.Edited() || m.Len() == len(editBase) {
		t.Fatal("edits not recorded")
	}
	m.ResetEdits()
	if m.Edited() || m.Len() != len(editBase) || string(m.AppendTo(nil)) != editBase {
		t.Fatalf("after ResetEdits: Edited %v Len %d\n%s", m.Edited(), m.Len(), m.AppendTo(nil))
	}
	// A second branch with other edits: nothing of the first survives,
	// and the ranges edited before can be edited again.
	editMust(t, m.SetMaxForwards(69))
	editMust(t, m.DeleteHeader(m.Find(KindContact)))
	want := editRep(editRep(editBase, "Max-Forwards: 70", "Max-Forwards: 69"), "Contact: <sip:alice@pc33.atlanta.com>\r\n", "")
	eq(t, "second branch", m.AppendTo(nil), want)
	if m.Len() != len(want) {
		t.Errorf("Len %d, want %d", m.Len(), len(want))
	}
}

// forwardEdits makes the edits a proxy makes on a forwarded request and
// writes it.
func forwardEdits(t testing.TB, m *Message) []byte {
	t.Helper()
	s, e := m.RequestURISpan()
	if err := m.Replace(s, e, []byte("sip:bob@192.0.2.4:5062")); err != nil {
		t.Fatal(err)
	}
	if err := m.SetMaxForwards(69); err != nil {
		t.Fatal(err)
	}
	if err := m.InsertHeader(0, "Via", []byte("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKSe0123456789abcdef.0123456789abcdef;rport")); err != nil {
		t.Fatal(err)
	}
	if err := m.InsertHeader(m.Find(KindVia), "Record-Route", []byte("<sip:192.0.2.1;lr>")); err != nil {
		t.Fatal(err)
	}
	return m.AppendTo(nil)
}

// TestRecycle: a recycled Message's buffers serve the next Message parsed
// without its own, which then parses and edits without allocating; what
// the recycled Message parsed stays readable through its views, and the
// next one writes the same bytes as a fresh Message would.
func TestRecycle(t *testing.T) {
	want := editRep(editRep(editRep(editBase, "INVITE sip:bob@biloxi.com", "INVITE sip:bob@192.0.2.4:5062"),
		"Max-Forwards: 70", "Max-Forwards: 69"),
		editViaLine, "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKSe0123456789abcdef.0123456789abcdef;rport\r\nRecord-Route: <sip:192.0.2.1;lr>\r\n"+editViaLine)
	var first Message
	if err := first.Parse([]byte(editBase), nil); err != nil {
		t.Fatal(err)
	}
	if got := string(forwardEdits(t, &first)); got != want {
		t.Fatalf("fresh message:\n%s\nwant:\n%s", got, want)
	}
	callID := first.CallID()
	first.Recycle()
	if first.NumHeaders() != 0 || first.Edited() {
		t.Fatal("a recycled Message is not empty")
	}
	if string(callID) != "a84b4c76e66710@pc33.atlanta.com" {
		t.Fatalf("a view of the recycled message changed: %q", callID)
	}
	// The pool may drop what it holds at a garbage collection; the
	// allocation count is what a Message gets when it does not.
	buf := []byte(editBase)
	out := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(50, func() {
		var m Message
		if err := m.Parse(buf, nil); err != nil {
			t.Fatal(err)
		}
		forwardEdits(t, &m)
		out = m.AppendTo(out[:0])
		m.Recycle()
	})
	// forwardEdits' own AppendTo(nil) is one; the Message (which escapes
	// into Recycle's pool through its buffers' holder) at most one more.
	// (The race detector's sync.Pool drops some of what it is given.)
	if allocs > 2 && !race.Enabled {
		t.Errorf("parse, edit, write and recycle: %.1f allocations, want at most 2", allocs)
	}
	if string(out) != want {
		t.Fatalf("message parsed into recycled buffers:\n%s\nwant:\n%s", out, want)
	}
}

// TestAppendToOneAllocation: an edited message is written into a short
// buffer with a single allocation (of the exact size, rounded up to the
// allocator's size class).
func TestAppendToOneAllocation(t *testing.T) {
	var m Message
	if err := m.Parse([]byte(editBase), nil); err != nil {
		t.Fatal(err)
	}
	forwardEdits(t, &m)
	var out []byte
	if n := testing.AllocsPerRun(100, func() { out = m.AppendTo(nil) }); n != 1 && !race.Enabled {
		t.Errorf("AppendTo(nil) of an edited message: %.0f allocations, want 1", n)
	}
	if len(out) != m.Len() || cap(out) > m.Len()+64 {
		t.Errorf("len %d cap %d, want %d and about as much", len(out), cap(out), m.Len())
	}
}
