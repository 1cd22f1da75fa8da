package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sipedge/digest"
)

// users runs "sipedge users args..." through run with input on stdin.
func users(t *testing.T, input string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	old := stdin
	stdin = strings.NewReader(input)
	defer func() { stdin = old }()
	var o, e bytes.Buffer
	code = run(append([]string{"users"}, args...), &o, &e)
	return code, o.String(), e.String()
}

func TestUsersCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "users")
	verify := func(user, realm, password string) bool {
		t.Helper()
		u, err := digest.LoadUsers(file)
		if err != nil {
			t.Fatal(err)
		}
		e, ok := u.Lookup([]byte(user), []byte(realm))
		if !ok {
			return false
		}
		for _, a := range []digest.Algorithm{digest.MD5, digest.SHA256, digest.SHA512_256} {
			if h, ok := e.HA1(a); !ok || string(h) != digest.HA1(a, user, realm, password) {
				return false
			}
		}
		return true
	}
	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string // prefix
		stderr string // substring
	}{
		{name: "add", stdin: "s3cret\n", args: []string{"add", file, "alice", "--realm", "sip.example.com"},
			stdout: file + ": user alice set in realm sip.example.com\n"},
		{name: "add with the flag first, CRLF", stdin: "pw two\r\n", args: []string{"add", "--realm=sip.example.com", file, "bob"}},
		{name: "add without a final newline", stdin: "third", args: []string{"add", file, "--realm", "other.example.com", "alice"}},
		{name: "list", args: []string{"list", file},
			stdout: "alice\tsip.example.com\tmd5,sha-256,sha-512-256\nbob\tsip.example.com\tmd5,sha-256,sha-512-256\nalice\tother.example.com\tmd5,sha-256,sha-512-256\n"},
		{name: "replace", stdin: "new\n", args: []string{"add", file, "alice", "--realm", "sip.example.com"}},
		{name: "remove", args: []string{"remove", file, "bob", "--realm", "sip.example.com"}, stdout: file + ": user bob removed from realm sip.example.com\n"},
		{name: "remove again", args: []string{"remove", file, "bob", "--realm", "sip.example.com"}, code: 1,
			stderr: "sipedge users remove: users file " + file + ": no user bob in realm sip.example.com (sipedge users list " + file + " shows who is there)"},

		{name: "empty password", stdin: "\n", args: []string{"add", file, "carol", "--realm", "r"}, code: 2, stderr: "empty password on stdin"},
		{name: "no stdin", stdin: "", args: []string{"add", file, "carol", "--realm", "r"}, code: 2, stderr: "empty password on stdin"},
		{name: "password too long", stdin: strings.Repeat("x", 1025) + "\n", args: []string{"add", file, "carol", "--realm", "r"}, code: 2, stderr: "password longer than 1024 bytes"},
		{name: "no realm", stdin: "pw\n", args: []string{"add", file, "carol"}, code: 2, stderr: "--realm REALM is required"},
		{name: "bad user name", stdin: "pw\n", args: []string{"add", file, "car ol", "--realm", "r"}, code: 1, stderr: `user "car ol": no spaces`},
		{name: "missing user", args: []string{"add", file, "--realm", "r"}, code: 2, stderr: "sipedge users add: want FILE USER --realm REALM"},
		{name: "extra argument", args: []string{"remove", file, "a", "b", "--realm", "r"}, code: 2, stderr: "want FILE USER --realm REALM"},
		{name: "list with realm", args: []string{"list", file, "--realm", "r"}, code: 2, stderr: "--realm is not used by list"},
		{name: "list missing file", args: []string{"list", filepath.Join(dir, "nope")}, code: 1, stderr: "sipedge users list: users file: open " + filepath.Join(dir, "nope")},
		{name: "unknown command", args: []string{"show", file}, code: 2, stderr: `unknown command "show"`},
		{name: "no command", code: 2, stderr: "want add, remove or list"},
		{name: "unknown flag", args: []string{"add", file, "alice", "--realm", "r", "--force"}, code: 2, stderr: "flag provided but not defined: -force"},
		{name: "help", args: []string{"--help"}, stdout: "sipedge users — manage the users file"},
		{name: "help of a command", args: []string{"add", "--help"}, stdout: "sipedge users — manage the users file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := users(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, stderr)
			}
			if !strings.HasPrefix(stdout, tc.stdout) || (tc.name == "list" && stdout != tc.stdout) {
				t.Errorf("stdout %q, want %q", stdout, tc.stdout)
			}
			if tc.stderr == "" && stderr != "" || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr %q, want %q", stderr, tc.stderr)
			}
			if tc.code != 0 && strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", stderr)
			}
		})
	}
	if !verify("alice", "sip.example.com", "new") || !verify("alice", "other.example.com", "third") || verify("bob", "sip.example.com", "pw two") {
		b, _ := os.ReadFile(file)
		t.Errorf("file after the commands:\n%s", b)
	}
	b, _ := os.ReadFile(file)
	if strings.Contains(string(b), "new") || strings.Contains(string(b), "third") {
		t.Errorf("a password is in the file:\n%s", b)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	// The help text's example works as written.
	if !strings.Contains(usersUsage, "printf '%s\\n' 's3cret' | sipedge users add /etc/sipedge/users alice --realm sip.example.com") {
		t.Error("help lost its example")
	}
}

func TestUsersPasswordWithCRLFAndSpaces(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	if code, _, stderr := users(t, " pass word \r\n", "add", file, "dave", "--realm", "r"); code != 0 {
		t.Fatal(stderr)
	}
	u, err := digest.LoadUsers(file)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := u.Lookup([]byte("dave"), []byte("r"))
	if h, _ := e.HA1(digest.MD5); string(h) != digest.HA1(digest.MD5, "dave", "r", " pass word ") {
		t.Error("the password's spaces are part of it; only the line end goes")
	}
}
