package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestCallsSipp: a sipp UAS registers as "callee" through sipedge, a sipp
// UAC places 20 calls to it (INVITE/100/180/200/ACK/BYE/200, ACK and BYE
// following the Record-Route), over UDP and over TCP. Every call must
// complete, on both sides.
func TestCallsSipp(t *testing.T) {
	sipp := needSipp(t)
	td := mustAbs(t, "testdata")
	for _, tr := range []string{"u1", "t1"} {
		tr := tr
		t.Run(tr, func(t *testing.T) {
			s := start(t)
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "callee.csv"), []byte("SEQUENTIAL\ncallee;x\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "caller.csv"), []byte("SEQUENTIAL\ncaller;x\n"), 0o644)
			uasPort := strconv.Itoa(freePort(t))
			const calls = "20"

			uas := exec.Command(sipp, "-sf", filepath.Join(td, "call-uas.xml"), "-t", tr, "-i", "127.0.0.1",
				"-p", uasPort, "-m", calls, "-nostdin", "-timeout", "40s",
				"-trace_stat", "-stf", filepath.Join(dir, "uas.csv"))
			uas.Dir = dir
			uasOut, _ := os.Create(filepath.Join(dir, "uas.log"))
			uas.Stdout, uas.Stderr = uasOut, uasOut
			if err := uas.Start(); err != nil {
				t.Fatal(err)
			}
			defer uas.Process.Kill()
			time.Sleep(300 * time.Millisecond) // let the UAS bind its port

			reg := exec.Command(sipp, "-sf", filepath.Join(td, "register.xml"), "-t", tr, "-i", "127.0.0.1",
				"-inf", filepath.Join(dir, "callee.csv"), "-key", "cport", uasPort, "-m", "1",
				"-nostdin", "-timeout", "10s", s.addr())
			reg.Dir = dir
			if out, err := reg.CombinedOutput(); err != nil {
				t.Fatalf("register: %v\n%s", err, tail(out))
			}

			uac := exec.Command(sipp, "-sf", filepath.Join(td, "call-uac.xml"), "-t", tr, "-i", "127.0.0.1",
				"-inf", filepath.Join(dir, "caller.csv"), "-s", "callee", "-m", calls, "-r", "10", "-d", "100",
				"-nostdin", "-timeout", "30s", "-trace_stat", "-stf", filepath.Join(dir, "uac.csv"), s.addr())
			uac.Dir = dir
			if out, err := uac.CombinedOutput(); err != nil {
				t.Fatalf("calls: %v\n%s", err, tail(out))
			}
			expectCalls(t, "UAC", filepath.Join(dir, "uac.csv"), 20)
			done := make(chan error, 1)
			go func() { done <- uas.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					log, _ := os.ReadFile(filepath.Join(dir, "uas.log"))
					t.Fatalf("UAS: %v\n%s", err, tail(log))
				}
			case <-time.After(20 * time.Second):
				t.Fatal("UAS did not finish its 20 calls")
			}
			expectCalls(t, "UAS", filepath.Join(dir, "uas.csv"), 20)
		})
	}
}
