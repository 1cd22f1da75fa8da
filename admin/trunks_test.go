package admin

import (
	"strings"
	"testing"
	"time"
)

type fakeTrunks []Trunk

func (f fakeTrunks) Trunks() []Trunk { return f }

// TestTrunks: GET /api/v1/trunks lists the trunks, an empty list without
// any, and needs the token like everything else.
func TestTrunks(t *testing.T) {
	base := serve(t, "", nil)
	if code, body := do(t, "GET", base+"/api/v1/trunks", ""); code != 200 || !strings.Contains(body, `"trunks": []`) {
		t.Fatalf("no trunks: %d %s", code, body)
	}
	next := time.Date(2026, 12, 6, 9, 20, 33, 0, time.UTC)
	s, err := New(Config{Listen: "127.0.0.1:0", Token: "tok", Trunks: fakeTrunks{{Name: "provider", Registrar: "sip:sip.provider.example",
		State: "failed", Since: next.Add(-time.Minute), LastError: "503 Service Unavailable", NextAt: &next, Failures: 3}}}, nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(s.Close)
	url := "http://" + s.Addr().String() + "/api/v1/trunks"
	if code, _ := do(t, "GET", url, ""); code != 401 {
		t.Fatalf("without the token: %d", code)
	}
	code, body := do(t, "GET", url, "tok")
	for _, want := range []string{`"name": "provider"`, `"state": "failed"`, `"registered": false`, `"last_error": "503 Service Unavailable"`,
		`"next_attempt": "2026-12-06T09:20:33Z"`, `"failures": 3`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("%d %s: no %s", code, body, want)
		}
	}
}
