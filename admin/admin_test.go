package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

type fakeBans struct{ bans []Ban }

func (f *fakeBans) List() []Ban { return f.bans }
func (f *fakeBans) Lift(p netip.Prefix) int {
	n := 0
	kept := f.bans[:0]
	for _, b := range f.bans {
		if p.Contains(netip.MustParseAddr(b.Source)) {
			n++
			continue
		}
		kept = append(kept, b)
	}
	f.bans = kept
	return n
}

type draining bool

func (d draining) Draining() bool { return bool(d) }

func serve(t *testing.T, token string, bans Bans) string {
	t.Helper()
	s, err := New(Config{Listen: "127.0.0.1:0", Token: token}, bans, draining(false), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(s.Close)
	return "http://" + s.Addr().String()
}

func do(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		listen, token string
		ok            bool
	}{
		{"127.0.0.1:8080", "", true},
		{"[::1]:8080", "", true},
		{"localhost:8080", "", true},
		{"0.0.0.0:8080", "", false},
		{"0.0.0.0:8080", "s3cret", true},
		{"192.0.2.1:8080", "", false},
		{"8080", "", false},
	} {
		if err := Check(tc.listen, tc.token); (err == nil) != tc.ok {
			t.Errorf("Check(%q, %q) = %v", tc.listen, tc.token, err)
		}
	}
}

func TestToken(t *testing.T) {
	url := serve(t, "s3cret", &fakeBans{})
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {"wrong", 401}, {"s3cret", 200}} {
		if code, body := do(t, "GET", url+"/healthz", tc.token); code != tc.want {
			t.Errorf("token %q: %d %s", tc.token, code, body)
		}
	}
}

func TestBans(t *testing.T) {
	since := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	f := &fakeBans{bans: []Ban{{Source: "203.0.113.7", Reason: "rate", Since: since, Until: since.Add(5 * time.Minute), Dropped: 42},
		{Source: "2001:db8::1", Reason: "auth-failures", Since: since, Until: since.Add(15 * time.Minute)}}}
	url := serve(t, "", f)
	code, body := do(t, "GET", url+"/api/v1/bans", "")
	var got struct{ Bans []Ban }
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil || len(got.Bans) != 2 || got.Bans[0].Dropped != 42 {
		t.Fatalf("%d %s", code, body)
	}
	if code, body := do(t, "DELETE", url+"/api/v1/bans/203.0.113.7", ""); code != 200 || !strings.Contains(body, `"lifted": 1`) {
		t.Fatalf("lift: %d %s", code, body)
	}
	if code, _ := do(t, "DELETE", url+"/api/v1/bans/203.0.113.7", ""); code != 404 {
		t.Fatalf("lift again: %d, want 404", code)
	}
	if code, body := do(t, "DELETE", url+"/api/v1/bans/2001:db8::/32", ""); code != 200 || !strings.Contains(body, `"lifted": 1`) {
		t.Fatalf("lift a prefix: %d %s", code, body)
	}
	if code, _ := do(t, "DELETE", url+"/api/v1/bans/not-an-address", ""); code != 400 {
		t.Fatalf("bad source: %d, want 400", code)
	}
	if code, _ := do(t, "POST", url+"/api/v1/bans", ""); code != 405 {
		t.Fatalf("POST: %d, want 405", code)
	}
}
