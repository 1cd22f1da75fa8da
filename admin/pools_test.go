package admin

import (
	"encoding/json"
	"net/http"
	"testing"
)

type fakePools []map[string]any

func (f fakePools) View() any { return []map[string]any(f) }

func TestPools(t *testing.T) {
	// None configured: an empty list.
	code, body := do(t, "GET", serve(t, "", nil)+"/api/v1/pools", "")
	if code != http.StatusOK || body != "{\n  \"pools\": []\n}\n" {
		t.Fatalf("%d %q", code, body)
	}
	s, err := New(Config{Listen: "127.0.0.1:0", Token: "tok", Pools: fakePools{{"name": "pbx", "targets_up": 1}}}, nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(s.Close)
	url := "http://" + s.Addr().String() + "/api/v1/pools"
	if code, _ := do(t, "GET", url, ""); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", code)
	}
	code, body = do(t, "GET", url, "tok")
	var got struct {
		Pools []struct {
			Name      string `json:"name"`
			TargetsUp int    `json:"targets_up"`
		} `json:"pools"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 || len(got.Pools) != 1 || got.Pools[0].Name != "pbx" || got.Pools[0].TargetsUp != 1 {
		t.Fatalf("%d %s (%v)", code, body, err)
	}
}
