package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// sippRun runs a sipp UAC scenario against sipedge and checks that every
// call of it succeeded.
func sippRun(t *testing.T, sipp, dir, scenario, tr, service string, n int, target string) {
	t.Helper()
	stats := filepath.Join(dir, scenario+".csv")
	c := exec.Command(sipp, "-sf", filepath.Join(mustAbs(t, "testdata"), scenario), "-t", tr, "-i", "127.0.0.1",
		"-inf", filepath.Join(dir, "caller.csv"), "-s", service, "-m", strconv.Itoa(n), "-r", "5",
		"-nostdin", "-timeout", "30s", "-trace_stat", "-stf", stats, target)
	c.Dir = dir
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", scenario, err, tail(out))
	}
	expectCalls(t, scenario, stats, n)
}

// registeredUAS starts a sipp UAS scenario and registers it through sipedge
// as user.
func registeredUAS(t *testing.T, sipp, dir, scenario, tr, user string, n int, s *server) *exec.Cmd {
	t.Helper()
	return uasWithQ(t, sipp, dir, scenario, tr, user, "", n, s)
}

// TestBusyAndCancelSipp: over UDP and TCP, a busy callee's 486 is relayed
// (and ACKed hop by hop), and a caller that cancels a ringing call gets 200
// for the CANCEL and 487 for the INVITE while the callee sees the CANCEL.
func TestBusyAndCancelSipp(t *testing.T) {
	sipp := needSipp(t)
	for _, tr := range []string{"u1", "t1"} {
		tr := tr
		t.Run(tr, func(t *testing.T) {
			s := start(t)
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)
			busy := registeredUAS(t, sipp, dir, "uas-busy.xml", tr, "busy", 5, s)
			ringer := registeredUAS(t, sipp, dir, "uas-ring.xml", tr, "ringer", 5, s)
			sippRun(t, sipp, dir, "uac-busy.xml", tr, "busy", 5, s.addr())
			sippRun(t, sipp, dir, "uac-cancel.xml", tr, "ringer", 5, s.addr())
			// The callees saw all their calls end properly: the hop-by-hop
			// ACK of the 486 and of the 487, and the CANCEL.
			waitUAS(t, "busy", busy)
			waitUAS(t, "ringer", ringer)
		})
	}
}

// uasWithQ starts a sipp UAS and registers it as user, with a q-value
// unless q is empty.
func uasWithQ(t *testing.T, sipp, dir, scenario, tr, user, q string, n int, s *server) *exec.Cmd {
	t.Helper()
	port := strconv.Itoa(freePort(t))
	uas := exec.Command(sipp, "-sf", filepath.Join(mustAbs(t, "testdata"), scenario), "-t", tr, "-i", "127.0.0.1",
		"-p", port, "-m", strconv.Itoa(n), "-nostdin", "-timeout", "40s")
	uas.Dir = dir
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uas.Process.Kill() })
	time.Sleep(300 * time.Millisecond)
	csv := filepath.Join(dir, user+".csv")
	os.WriteFile(csv, []byte("SEQUENTIAL\n"+user+";x\n"), 0o644)
	args := []string{"-sf", filepath.Join(mustAbs(t, "testdata"), "register.xml")}
	if q != "" {
		args = []string{"-sf", filepath.Join(mustAbs(t, "testdata"), "register-q.xml"), "-key", "q", q}
	}
	args = append(args, "-t", tr, "-i", "127.0.0.1", "-inf", csv, "-key", "cport", port, "-m", "1",
		"-nostdin", "-timeout", "10s", s.addr())
	reg := exec.Command(sipp, args...)
	reg.Dir = dir
	if out, err := reg.CombinedOutput(); err != nil {
		t.Fatalf("register %s: %v\n%s", user, err, tail(out))
	}
	return uas
}

func waitUAS(t *testing.T, name string, uas *exec.Cmd) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- uas.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s UAS: %v", name, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s UAS did not see its calls through", name)
	}
}

// TestForkingSipp: a user registered from two contacts with the same q is
// called on both at once; when one answers, the other (ringing) is
// cancelled (RFC 3261 §16.7 step 10). A user registered with q=0.9 and
// q=0.5 is tried in that order: the first answers 480, the second gets
// the call (§16.6 sequential search).
func TestForkingSipp(t *testing.T) {
	sipp := needSipp(t)
	for _, tr := range []string{"u1", "t1"} {
		tr := tr
		t.Run(tr, func(t *testing.T) {
			s := start(t)
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)
			// Parallel.
			answers := uasWithQ(t, sipp, dir, "call-uas.xml", tr, "forky", "1.0", 3, s)
			rings := uasWithQ(t, sipp, dir, "uas-ring.xml", tr, "forky", "1.0", 3, s)
			sippRun(t, sipp, dir, "call-uac.xml", tr, "forky", 3, s.addr())
			waitUAS(t, "answering", answers)
			waitUAS(t, "ringing (cancelled)", rings)
			// Sequential.
			first := uasWithQ(t, sipp, dir, "uas-unavailable.xml", tr, "seq", "0.9", 3, s)
			second := uasWithQ(t, sipp, dir, "call-uas.xml", tr, "seq", "0.5", 3, s)
			sippRun(t, sipp, dir, "call-uac.xml", tr, "seq", 3, s.addr())
			waitUAS(t, "q=0.9 (480)", first)
			waitUAS(t, "q=0.5 (answers)", second)
		})
	}
}
