package proxy

import (
	"strings"
	"testing"
)

// Tests that need the core's unexported parts. They cannot use proxytest
// (it imports proxy); everything with sockets is in the external tests.

// A REGISTER whose bindings could not be written is answered 500 with the
// transaction's headers, built from the 200 that was ready (RFC 3261 §10.3:
// the registrar must not claim a binding it did not keep).
func TestFailedRegisterResponse(t *testing.T) {
	c, err := New(Config{UserAgent: "sipedge/test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ok := []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5060\r\n" +
		"From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>;tag=abc\r\nCall-ID: c1\r\nCSeq: 7 REGISTER\r\n" +
		"Contact: <sip:a@10.0.0.1>;expires=3600\r\nServer: sipedge/test\r\nContent-Length: 0\r\n\r\n")
	got := string(c.failedResponse(ok, 500))
	want := "SIP/2.0 500 Server Internal Error\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5060\r\n" +
		"From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>;tag=abc\r\nCall-ID: c1\r\nCSeq: 7 REGISTER\r\n" +
		"Server: sipedge/test\r\nContent-Length: 0\r\n\r\n"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

// Without a UserAgent the Server header is "sipedge"; NoUserAgent leaves it
// out of the responses the core builds.
func TestServerHeaderSetting(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "sipedge"},
		{Config{UserAgent: "edge"}, "edge"},
		{Config{UserAgent: "edge", NoUserAgent: true}, ""},
	} {
		c, err := New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		ok := []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\n" +
			"To: <sip:a@example.com>;tag=abc\r\nCall-ID: c1\r\nCSeq: 7 REGISTER\r\nContent-Length: 0\r\n\r\n")
		got := string(c.failedResponse(ok, 500))
		c.Close()
		has := strings.Contains(got, "\r\nServer: "+tc.want+"\r\n")
		if tc.want == "" {
			has = !strings.Contains(got, "Server:")
		}
		if c.cfg.UserAgent != tc.want || !has {
			t.Errorf("%+v: UserAgent %q, response\n%s", tc.cfg, c.cfg.UserAgent, got)
		}
	}
}
