package registrar

import (
	"strings"
	"testing"
	"time"
)

// TestSetLimits: new limits apply to the next REGISTER (reload); bindings
// already made keep their expiry; bad limits are refused and the old ones
// stay.
func TestSetLimits(t *testing.T) {
	r := newRegistrar(t, Config{})
	if res := register(t, r, parse(t, req{cseq: 1, hdrs: []string{"Contact: <sip:a@192.0.2.1>;expires=90"}}.text())); res.Code != 200 {
		t.Fatalf("90 s under the default 60 s minimum: %d", res.Code)
	}
	if err := r.SetLimits(Limits{MinExpires: 120 * time.Second, MaxExpires: 600 * time.Second, MaxContacts: 1}); err != nil {
		t.Fatal(err)
	}
	res := register(t, r, parse(t, req{cseq: 2, hdrs: []string{"Contact: <sip:b@192.0.2.1>;expires=90"}}.text()))
	if res.Code != 423 || !strings.Contains(string(res.Extra), "Min-Expires: 120\r\n") {
		t.Fatalf("after SetLimits: %d %q, want 423 with Min-Expires: 120", res.Code, res.Extra)
	}
	res = register(t, r, parse(t, req{cseq: 3, hdrs: []string{"Contact: <sip:a@192.0.2.1>;expires=3600"}}.text()))
	if res.Code != 200 || !strings.Contains(string(res.Extra), "expires=600") {
		t.Fatalf("max_expires after SetLimits: %d %q, want the interval cut to 600", res.Code, res.Extra)
	}
	if err := r.SetLimits(Limits{MinExpires: time.Hour, MaxExpires: time.Minute}); err == nil {
		t.Fatal("min above max accepted")
	}
	if res := register(t, r, parse(t, req{cseq: 4, hdrs: []string{"Contact: <sip:a@192.0.2.1>;expires=3600"}}.text())); res.Code != 200 || !strings.Contains(string(res.Extra), "expires=600") {
		t.Fatalf("refused limits changed the registrar: %d %q", res.Code, res.Extra)
	}
}
