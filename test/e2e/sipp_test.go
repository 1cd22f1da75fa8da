package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// needSipp returns the sipp binary; without it the test is skipped on a
// developer machine and fails in CI (test.sh installs Debian's sip-tester).
func needSipp(t *testing.T) string {
	p, err := exec.LookPath("sipp")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sipp not installed (apt-get install sip-tester)")
		}
		t.Skip("sipp not installed (apt-get install sip-tester)")
	}
	return p
}

// TestOptionsSipp: sipp exchanges 50 OPTIONS with sipedge over UDP and
// over TCP; every one must get its 200.
func TestOptionsSipp(t *testing.T) {
	sipp := needSipp(t)
	for _, tr := range []string{"u1", "t1"} {
		tr := tr
		t.Run(tr, func(t *testing.T) {
			s := start(t)
			dir := t.TempDir()
			stats := filepath.Join(dir, "stats.csv")
			run := exec.Command(sipp, "-sf", filepath.Join(mustAbs(t, "testdata"), "options-uac.xml"), "-t", tr,
				"-i", "127.0.0.1", "-m", "50", "-r", "50", "-timeout", "20s",
				"-trace_stat", "-stf", stats, "-nostdin", s.addr())
			run.Dir = dir
			out, err := run.CombinedOutput()
			if err != nil {
				t.Fatalf("sipp failed: %v\n%s", err, tail(out))
			}
			expectCalls(t, "OPTIONS", stats, 50)
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// expectCalls checks sipp's -trace_stat file: n successful calls, none
// failed.
func expectCalls(t *testing.T, what, statsFile string, n int) {
	t.Helper()
	b, err := os.ReadFile(statsFile)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if ok, failed := lastStat(t, string(b)); ok != n || failed != 0 {
		t.Fatalf("%s: %d succeeded, %d failed, want %d/0", what, ok, failed, n)
	}
}

// lastStat reads SuccessfulCall(C) and FailedCall(C) from the last line of
// sipp's -trace_stat CSV.
func lastStat(t *testing.T, csv string) (ok, failed int) {
	lines := regexp.MustCompile(`\r?\n`).Split(csv, -1)
	var header, last []string
	for _, l := range lines {
		if l == "" {
			continue
		}
		f := regexp.MustCompile(`;`).Split(l, -1)
		if header == nil {
			header = f
			continue
		}
		last = f
	}
	if header == nil || last == nil {
		t.Fatalf("no sipp statistics:\n%s", csv)
	}
	for i, h := range header {
		if i >= len(last) {
			break
		}
		switch h {
		case "SuccessfulCall(C)":
			ok, _ = strconv.Atoi(last[i])
		case "FailedCall(C)":
			failed, _ = strconv.Atoi(last[i])
		}
	}
	return ok, failed
}
