package config

import (
	"strings"
	"testing"
	"time"
)

func TestTrunks(t *testing.T) {
	c, err := Parse([]byte("trunks:\n  - name: provider\n    registrar: sip:sip.provider.example\n    username: \"4930123\"\n    password: s3cret\n" +
		"    expires: 120s\n    transport: tcp\n    inbound: sip:{to}@example.com\nroutes:\n  - name: out\n    prefix: \"0\"\n    to: trunk:provider\n"))
	if err != nil {
		t.Fatal(err)
	}
	tr := c.Trunks[0]
	if tr.Name != "provider" || tr.Expires.Duration != 120*time.Second || tr.RegistrarURI() != "sip:sip.provider.example;transport=tcp" {
		t.Fatalf("%+v", tr)
	}
	base := "trunks:\n  - name: p\n    registrar: sip:192.0.2.1\n    username: u\n    password: x\n"
	for _, tc := range []struct{ yaml, want string }{
		{"trunks:\n  - name: \"a b\"\n", `config:2: trunks[0].name: "a b": a name of letters`},
		{base + "  - name: p\n", `config:6: trunks[1].name: "p" is the name of an earlier trunk too`},
		{"trunks:\n  - name: p\n    registrar: gw.example\n", `config:2: trunks[0].registrar: "gw.example": needs a SIP URI`},
		{"trunks:\n  - name: p\n    registrar: sip:192.0.2.1\n", `config:2: trunks[0].username: "": the user name`},
		{"trunks:\n  - name: p\n    registrar: sip:192.0.2.1\n    username: u\n", `config:2: trunks[0].password: write one of password and password_file`},
		{base + "    password_file: /x\n", `config:2: trunks[0].password: write one of`},
		{base + "    transport: sctp\n", `config:2: trunks[0].transport: "sctp": use udp, tcp or tls`},
		{base + "    expires: 500ms\n", `config:2: trunks[0].expires: 500ms: from 1s to 24h`},
		{base + "    retry_min: 1m\n    retry_max: 10s\n", `config:2: trunks[0].retry_max:`},
		{base + "    inbound: alice\n", `config:2: trunks[0].inbound: "alice": needs a SIP URI`},
		{base + "  - name: q\n    registrar: sip:192.0.2.2\n    username: u\n    password: y\n", `config:6: trunks[1].contact_user: "u" is registered by trunk p too`},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant prefix %q", tc.yaml, err, tc.want)
		}
	}
}
