package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sipedge/digest"
)

// sipvicious (Debian's 0.3.3, MD5 only) against the running binary: the
// scanner every SIP server on the Internet meets within minutes. sipedge
// trusts nobody here (trusted_networks: []), so the scanner on 127.0.0.1 is
// a stranger; extensions 100 and 105 exist.

func needSipvicious(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"svmap", "svwar", "svcrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not installed (Debian package sipvicious; test.sh installs it)", tool)
			}
			t.Skipf("%s not installed (Debian package sipvicious)", tool)
		}
	}
}

func sipviciousServer(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	for _, u := range []string{"100", "105"} {
		if err := digest.AddUser(users, u, authRealm, "secret"+u); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "sipedge.yaml")
	// The scanners write To/From as sip:EXT@127.0.0.1 without a port:
	// 127.0.0.1 is a local domain, so a right password would be taken.
	yaml := fmt.Sprintf("dns:\n  servers: [\"127.0.0.1:9\"]\ndomains: [\"127.0.0.1\"]\ntrusted_networks: []\n"+
		"auth:\n  realm: %s\n  users_file: %s\n", authRealm, users)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return start(t, "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command("timeout", append([]string{"90", name}, args...)...)
	cmd.Dir = t.TempDir() // svwar and svcrack keep session files in the working directory
	out, _ := cmd.CombinedOutput()
	return string(out)
}

func TestSipvicious(t *testing.T) {
	needSipvicious(t)
	s := sipviciousServer(t)
	port := fmt.Sprint(s.port)

	// svmap sees sipedge, without a version.
	out := runTool(t, "svmap", "-p", port, "127.0.0.1")
	if !strings.Contains(out, "sipedge") {
		t.Fatalf("svmap did not find sipedge:\n%s", out)
	}
	if regexp.MustCompile(`sipedge\S*\d+\.\d+`).MatchString(out) {
		t.Fatalf("svmap sees a version:\n%s", out)
	}

	// svwar cannot tell existing extensions (100, 105) from others: every
	// one is answered the same (a challenge), so it finds nothing, even
	// forced past its own sanity check.
	for _, args := range [][]string{{"-e100-110"}, {"--force", "-e100-110"}, {"--force", "-m", "INVITE", "-e100-110"}} {
		out = runTool(t, "svwar", append(args, "-p", port, "127.0.0.1")...)
		for _, ext := range []string{"100", "105"} {
			if regexp.MustCompile(`\|\s*` + ext + `\s*\|`).MatchString(out) {
				t.Fatalf("svwar %v lists extension %s:\n%s", args, ext, out)
			}
		}
		if !strings.Contains(out, "found nothing") {
			t.Fatalf("svwar %v reported something:\n%s", args, out)
		}
	}

	// svcrack with the right password third finds it (the check can
	// fail) ...
	dict := filepath.Join(t.TempDir(), "short.txt")
	os.WriteFile(dict, []byte("a1\nb2\nsecret105\n"), 0o644)
	if out = runTool(t, "svcrack", "-u", "105", "-d", dict, "-p", port, "127.0.0.1"); !strings.Contains(out, "secret105") {
		t.Fatalf("svcrack did not find a password it had in its first three guesses:\n%s", out)
	}
	// ... but with 60 wrong guesses first, it is banned after 10
	// failures and never gets to it.
	var b strings.Builder
	for i := range 60 {
		fmt.Fprintf(&b, "wrong%d\n", i)
	}
	b.WriteString("secret100\n")
	os.WriteFile(dict, []byte(b.String()), 0o644)
	start := time.Now()
	out = runTool(t, "svcrack", "-u", "100", "-d", dict, "-p", port, "127.0.0.1")
	if strings.Contains(out, "secret100") {
		t.Fatalf("svcrack found the password:\n%s", out)
	}
	const ban = "ban 127.0.0.1 reason=auth-failures failures=10"
	if !strings.Contains(s.logs(), ban) {
		t.Fatalf("no %q in the log after %v; svcrack said:\n%s", ban, time.Since(start), out)
	}
	if n := strings.Count(s.logs(), "auth failure from 127.0.0.1:"); n < 10 || n > 13 {
		t.Errorf("%d auth failure lines, want the 10 that led to the ban (and the short run's 2)", n)
	}
}
