package sip

import (
	"net/netip"
	"strings"
	"testing"
)

// respReq has two Via lines (the first with two values, the second in
// compact form), compact From and Call-ID, and headers a response must not
// copy (Max-Forwards, Contact, Record-Route, Content-Type, a body).
const respReq = "INVITE sip:bob@biloxi.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1, SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2\r\n" +
	"v: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n" +
	"Max-Forwards: 68\r\n" +
	"To: Bob <sip:bob@biloxi.com>\r\n" +
	"f: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n" +
	"i: a84b4c76e66710@pc33.atlanta.com\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Contact: <sip:alice@pc33.atlanta.com>\r\n" +
	"Record-Route: <sip:p1.example.com;lr>\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: 4\r\n" +
	"\r\n" +
	"v=0\r"

const respVias = "Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1, SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2\r\n" +
	"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n"

const respTail = "From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n" +
	"CSeq: 314159 INVITE\r\n"

func TestAppendResponseTable(t *testing.T) {
	tests := []struct {
		name   string
		req    string
		code   int
		reason string
		tag    string
		extra  string
		want   string
		toTag  string // To tag of the parsed response
	}{
		{
			name: "486 adds the To tag and extra headers", req: respReq, code: 486, reason: "Busy Here", tag: "t9",
			extra: "Retry-After: 60\r\nWarning: 399 proxy \"busy\"\r\n",
			want: "SIP/2.0 486 Busy Here\r\n" + respVias + "To: Bob <sip:bob@biloxi.com>;tag=t9\r\n" + respTail +
				"Retry-After: 60\r\nWarning: 399 proxy \"busy\"\r\nContent-Length: 0\r\n\r\n",
			toTag: "t9",
		},
		{
			name: "100 Trying gets no tag", req: respReq, code: 100, reason: "Trying", tag: "t9",
			want:  "SIP/2.0 100 Trying\r\n" + respVias + "To: Bob <sip:bob@biloxi.com>\r\n" + respTail + "Content-Length: 0\r\n\r\n",
			toTag: "",
		},
		{
			// RFC 3261 §8.2.6.1: a 100 Trying echoes the Timestamp,
			// whatever the case of its name; the request's other
			// unknown headers are not copied.
			name: "100 Trying copies Timestamp", req: editRep(respReq, "Max-Forwards: 68\r\n", "Max-Forwards: 68\r\ntimestamp:  54.2 0.3 \r\nSubject: x\r\n"),
			code: 100, reason: "Trying", tag: "t9",
			want: "SIP/2.0 100 Trying\r\n" + respVias + "Timestamp: 54.2 0.3\r\nTo: Bob <sip:bob@biloxi.com>\r\n" + respTail +
				"Content-Length: 0\r\n\r\n",
			toTag: "",
		},
		{
			name: "Timestamp not copied into a 180", req: editRep(respReq, "Max-Forwards: 68\r\n", "Max-Forwards: 68\r\nTimestamp: 54\r\n"),
			code: 180, reason: "Ringing", tag: "r1",
			want:  "SIP/2.0 180 Ringing\r\n" + respVias + "To: Bob <sip:bob@biloxi.com>;tag=r1\r\n" + respTail + "Content-Length: 0\r\n\r\n",
			toTag: "r1",
		},
		{
			name: "101 gets a tag", req: respReq, code: 101, reason: "Early", tag: "e1",
			want:  "SIP/2.0 101 Early\r\n" + respVias + "To: Bob <sip:bob@biloxi.com>;tag=e1\r\n" + respTail + "Content-Length: 0\r\n\r\n",
			toTag: "e1",
		},
		{
			name: "180 gets a tag", req: respReq, code: 180, reason: "Ringing", tag: "r1",
			want:  "SIP/2.0 180 Ringing\r\n" + respVias + "To: Bob <sip:bob@biloxi.com>;tag=r1\r\n" + respTail + "Content-Length: 0\r\n\r\n",
			toTag: "r1",
		},
		{
			name: "existing To tag kept, not doubled", req: editRep(respReq, "To: Bob <sip:bob@biloxi.com>", "To: Bob <sip:bob@biloxi.com>;tag=dialog1"),
			code: 481, reason: "Call/Transaction Does Not Exist", tag: "t9",
			want: "SIP/2.0 481 Call/Transaction Does Not Exist\r\n" + respVias + "To: Bob <sip:bob@biloxi.com>;tag=dialog1\r\n" + respTail +
				"Content-Length: 0\r\n\r\n",
			toTag: "dialog1",
		},
		{
			name: "no tag given, none added", req: respReq, code: 404, reason: "Not Found", tag: "",
			want:  "SIP/2.0 404 Not Found\r\n" + respVias + "To: Bob <sip:bob@biloxi.com>\r\n" + respTail + "Content-Length: 0\r\n\r\n",
			toTag: "",
		},
		{
			name: "addr-spec To gets a header tag", req: editRep(respReq, "To: Bob <sip:bob@biloxi.com>", "t: sip:bob@biloxi.com"),
			code: 403, reason: "Forbidden", tag: "x",
			want:  "SIP/2.0 403 Forbidden\r\n" + respVias + "To: sip:bob@biloxi.com;tag=x\r\n" + respTail + "Content-Length: 0\r\n\r\n",
			toTag: "x",
		},
		{
			name: "response to a refused request (CSeq mismatch)", req: editRep(respReq, "CSeq: 314159 INVITE", "CSeq: 314159 BYE"),
			code: 400, reason: "CSeq Method Does Not Match", tag: "b",
			want: "SIP/2.0 400 CSeq Method Does Not Match\r\n" + respVias + "To: Bob <sip:bob@biloxi.com>;tag=b\r\n" +
				editRep(respTail, "CSeq: 314159 INVITE", "CSeq: 314159 BYE") + "Content-Length: 0\r\n\r\n",
			toTag: "b",
		},
		{
			name: "response to a request with a bad version", req: editRep(respReq, "SIP/2.0\r\n", "SIP/3.0\r\n"),
			code: 505, reason: "Version Not Supported", tag: "v",
			want: "SIP/2.0 505 Version Not Supported\r\n" + respVias + "To: Bob <sip:bob@biloxi.com>;tag=v\r\n" + respTail +
				"Content-Length: 0\r\n\r\n",
			toTag: "v",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req Message
			_ = req.Parse([]byte(tc.req), nil) // refused requests are answered too
			if req.Find(KindVia) < 0 {
				t.Fatal("request headers not indexed")
			}
			var tag []byte
			if tc.tag != "" {
				tag = []byte(tc.tag)
			}
			var extra []byte
			if tc.extra != "" {
				extra = []byte(tc.extra)
			}
			out := AppendResponse([]byte("prefix|"), &req, tc.code, tc.reason, tag, extra)
			got, ok := strings.CutPrefix(string(out), "prefix|")
			if !ok {
				t.Fatalf("dst prefix lost: %q", out)
			}
			if got != tc.want {
				t.Fatalf("response:\n%q\nwant:\n%q", got, tc.want)
			}
			var r Message
			if err := r.Parse([]byte(got), nil); err != nil {
				t.Fatalf("response does not parse: %v\n%s", err, got)
			}
			if r.IsRequest() || r.StatusCode() != tc.code || string(r.Reason()) != tc.reason {
				t.Errorf("status %d %q", r.StatusCode(), r.Reason())
			}
			eq(t, "call-id", r.CallID(), string(req.CallID()))
			eq(t, "cseq", r.Get(KindCSeq), string(req.Get(KindCSeq)))
			if n, _ := r.CSeq(); n != 314159 {
				t.Errorf("CSeq number %d", n)
			}
			// Every Via value, in order.
			if strings.Join(tblValues(&r, KindVia), "|") != strings.Join(tblValues(&req, KindVia), "|") || r.NumVias() != 3 {
				t.Errorf("vias %q, want %q", tblValues(&r, KindVia), tblValues(&req, KindVia))
			}
			to := mustAddr(t, r.Get(KindTo))
			eq(t, "to tag", to.Tag, tc.toTag)
			eq(t, "from", r.Get(KindFrom), string(req.Get(KindFrom)))
			if len(r.Body()) != 0 || r.ContentLength() != 0 {
				t.Errorf("body %q CL %d", r.Body(), r.ContentLength())
			}
			for _, k := range []HeaderKind{KindMaxForwards, KindContact, KindRecordRoute, KindContentType} {
				if r.Find(k) >= 0 {
					t.Errorf("%v copied into the response", k)
				}
			}
			if tc.extra != "" {
				ra := r.GetByName("Retry-After")
				cl := r.Find(KindContentLength)
				if string(ra) != "60" || cl != r.NumHeaders()-1 {
					t.Errorf("extra header %q, Content-Length at %d of %d", ra, cl, r.NumHeaders())
				}
			}
		})
	}
}

func TestReasonPhraseTable(t *testing.T) {
	for code, want := range map[int]string{
		100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
		200: "OK", 202: "Accepted",
		400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
		407: "Proxy Authentication Required", 408: "Request Timeout", 413: "Request Entity Too Large",
		414: "Request-URI Too Long", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
		420: "Bad Extension", 421: "Extension Required", 423: "Interval Too Brief",
		480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
		483: "Too Many Hops", 486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
		500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
		504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large", 603: "Decline",
		299: "Unknown", 0: "Unknown", 999: "Unknown",
	} {
		if got := ReasonPhrase(code); got != want {
			t.Errorf("ReasonPhrase(%d) = %q, want %q", code, got, want)
		}
	}
}

// TestAppendResponseFrom: the top Via of a locally generated response
// carries received and a filled rport (RFC 3261 §18.2.1, RFC 3581 §4), as
// the request's Via would have after arriving; the other Vias are copied.
func TestAppendResponseFrom(t *testing.T) {
	src := netip.MustParseAddrPort("203.0.113.7:40123")
	rest := "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp9\r\n"
	tests := []struct{ name, via, want string }{
		{"rport filled, received added", "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;rport",
			"SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;rport=40123;received=203.0.113.7"},
		{"rport in the middle", "SIP/2.0/UDP 10.0.0.5;rport;branch=z9hG4bKa",
			"SIP/2.0/UDP 10.0.0.5;rport=40123;branch=z9hG4bKa;received=203.0.113.7"},
		{"no rport, host differs: received only", "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa",
			"SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;received=203.0.113.7"},
		{"no rport, host is the source: untouched", "SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bKa",
			"SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bKa"},
		{"rport with host = source still gets received (RFC 3581 §4)", "SIP/2.0/UDP 203.0.113.7;branch=z9hG4bKa;rport",
			"SIP/2.0/UDP 203.0.113.7;branch=z9hG4bKa;rport=40123;received=203.0.113.7"},
		{"host name: received", "SIP/2.0/TCP pc.example.com;branch=z9hG4bKa",
			"SIP/2.0/TCP pc.example.com;branch=z9hG4bKa;received=203.0.113.7"},
		{"received already there: kept", "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKa;received=198.51.100.1;rport=9",
			"SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKa;received=198.51.100.1;rport=9"},
		{"RPORT in capitals", "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKa;RPORT",
			"SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKa;RPORT=40123;received=203.0.113.7"},
		{"second value of the same header kept", "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKa;rport , SIP/2.0/UDP p.example.com;branch=z9hG4bKq",
			"SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKa;rport=40123;received=203.0.113.7 , SIP/2.0/UDP p.example.com;branch=z9hG4bKq"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := "OPTIONS sip:x@example.com SIP/2.0\r\nVia: " + tc.via + "\r\n" + rest +
				"From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
			var m Message
			if err := m.Parse([]byte(req), nil); err != nil {
				t.Fatal(err)
			}
			out := string(AppendResponseFrom(nil, &m, src, 200, "OK", []byte("t1"), nil))
			if !strings.Contains(out, "\r\nVia: "+tc.want+"\r\n"+rest) {
				t.Fatalf("got\n%s\nwant top Via %q", out, tc.want)
			}
			var resp Message
			if err := resp.Parse([]byte(out), nil); err != nil {
				t.Fatalf("response does not parse: %v", err)
			}
			v, err := resp.TopVia()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(tc.want, "rport=40123") && v.RPort != 40123 {
				t.Errorf("rport %d", v.RPort)
			}
		})
	}
	// The zero source writes the Vias unchanged (AppendResponse).
	var m Message
	if err := m.Parse([]byte(respReq), nil); err != nil {
		t.Fatal(err)
	}
	if a, b := AppendResponse(nil, &m, 486, "Busy Here", nil, nil), AppendResponseFrom(nil, &m, netip.AddrPort{}, 486, "Busy Here", nil, nil); string(a) != string(b) {
		t.Fatal("AppendResponseFrom with no source differs from AppendResponse")
	}
}
