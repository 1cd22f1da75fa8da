package admin

import (
	"net/http"
	"strings"
	"testing"
)

type fakeSurvival map[string]any

func (f fakeSurvival) View() any { return map[string]any(f) }

func TestSurvival(t *testing.T) {
	// Not wired: off and normal.
	code, body := do(t, "GET", serve(t, "", nil)+"/api/v1/survival", "")
	if code != http.StatusOK || !strings.Contains(body, `"enabled": false`) || !strings.Contains(body, `"mode": "normal"`) {
		t.Fatalf("%d %q", code, body)
	}
	s, err := New(Config{Listen: "127.0.0.1:0", Token: "tok", Survival: fakeSurvival{"enabled": true, "mode": "survival", "reason": "upstream failed"}}, nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(s.Close)
	url := "http://" + s.Addr().String() + "/api/v1/survival"
	if code, _ := do(t, "GET", url, ""); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", code)
	}
	if code, body := do(t, "GET", url, "tok"); code != 200 || !strings.Contains(body, `"mode": "survival"`) {
		t.Fatalf("%d %s", code, body)
	}
}
