package calllog

import (
	"fmt"
	"runtime"
	"testing"

	"sipedge/internal/race"
	"sipedge/proxy"
	"sipedge/proxy/proxytest"
)

// TestCallMemory: what the call log takes from the heap for a call, from
// its INVITE to its line: the record with its strings, the JSON line,
// each one allocation of the size it needs (a string copied once more,
// or a line in a buffer grown by half again, would each add hundreds of
// bytes).
func TestCallMemory(t *testing.T) {
	if race.Enabled {
		// The race detector's sync.Pool drops a quarter of what is put
		// back, so the line buffers are made again at random.
		t.Skip("bytes per call are not what they are without -race")
	}
	fx := newFixture(t)
	reqs := make([]*proxy.Request, 400)
	for i := range reqs {
		reqs[i], _ = proxytest.Request(t, fx.core, msg("INVITE", "", fmt.Sprintf("tag%04d", i), 1), caller)
	}
	fails := make([]*proxy.Failure, len(reqs))
	for i, r := range reqs {
		fails[i] = r.TestFailure(486)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i, r := range reqs {
		fx.f.invite(r)
		fx.f.failure(fails[i])
	}
	runtime.ReadMemStats(&after)
	per := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(reqs))
	line := len(fx.f.recent[0].line)
	t.Logf("%.0f bytes per call, lines of %d bytes", per, line)
	if want := float64(line) + 500; per > want {
		t.Errorf("%.0f bytes per call, want at most %.0f (a %d-byte line, the record and its strings)", per, want, line)
	}
}
