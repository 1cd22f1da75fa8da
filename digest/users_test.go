package digest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sipedge/internal/race"
)

const md5Hex = "939e7578ed9e3c518a452acee763bce9"
const shaHex = "2c6cd34c5e0bba6bd5a9b1df3ef08c6b9c74ad0a79e4e0ac3a5a21b2d2d3f1a0"

func TestParseUsers(t *testing.T) {
	file := "# users\n\n  # indented comment\n" +
		"alice sip.example.com md5:" + md5Hex + " sha-256:" + strings.ToUpper(shaHex) + "\n" +
		"alice other.example.com\tMD5:" + md5Hex + "\r\n" +
		"bob sip.example.com sha-512-256:" + shaHex
	u, err := ParseUsers([]byte(file), "users")
	if err != nil {
		t.Fatal(err)
	}
	if u.Len() != 3 || len(u.All()) != 3 || u.All()[2].Name != "bob" {
		t.Fatalf("Len %d, All %v", u.Len(), u.All())
	}
	a, ok := u.Lookup([]byte("alice"), []byte("sip.example.com"))
	if !ok || a.Realm != "sip.example.com" {
		t.Fatal("alice not found")
	}
	if h, ok := a.HA1(MD5); !ok || string(h) != md5Hex {
		t.Errorf("alice md5 %s", h)
	}
	if h, ok := a.HA1(SHA256); !ok || string(h) != shaHex {
		t.Errorf("alice sha-256 %s (upper case must become lower case: the response hashes it)", h)
	}
	if _, ok := a.HA1(SHA512_256); ok {
		t.Error("alice has no sha-512-256")
	}
	if got := a.Algorithms(); len(got) != 2 || got[0] != MD5 || got[1] != SHA256 {
		t.Errorf("Algorithms %v", got)
	}
	if a2, ok := u.Lookup([]byte("alice"), []byte("other.example.com")); !ok || a2 == a {
		t.Error("alice in the other realm")
	}
	for _, miss := range [][2]string{{"alice", "third.example.com"}, {"carol", "sip.example.com"}, {"Alice", "sip.example.com"}, {"bob", "SIP.example.com"}, {`\alice`, "sip.example.com"}} {
		if _, ok := u.Lookup([]byte(miss[0]), []byte(miss[1])); ok {
			t.Errorf("Lookup(%q, %q) found", miss[0], miss[1])
		}
	}
	user, realm := []byte("bob"), []byte("sip.example.com")
	if n := testing.AllocsPerRun(100, func() { u.Lookup(user, realm) }); n != 0 && !race.Enabled {
		t.Errorf("Lookup allocates %v times", n)
	}
}

func TestParseUsersErrors(t *testing.T) {
	good := "alice r md5:" + md5Hex + "\n"
	for _, tc := range []struct {
		name, file, err string
	}{
		{"two fields", "alice r\n", "users file F:1: want USER REALM ALGORITHM:HA1..."},
		{"one field", good + "alice\n", "F:2: want USER REALM"},
		{"no colon", "alice r " + md5Hex, `F:1: "` + md5Hex + `": want ALGORITHM:HA1 with algorithm md5, sha-256 or sha-512-256`},
		{"unknown algorithm", "alice r sha-1:" + md5Hex, "want ALGORITHM:HA1 with algorithm md5"},
		{"sess algorithm", "alice r md5-sess:" + md5Hex, "want ALGORITHM:HA1"},
		{"empty algorithm", "alice r :" + md5Hex, "want ALGORITHM:HA1"},
		{"short hex", "alice r md5:" + md5Hex[1:], "md5 HA1 of user alice must be 32 hex digits"},
		{"md5 length for sha-256", "alice r sha-256:" + md5Hex, "sha-256 HA1 of user alice must be 64 hex digits"},
		{"not hex", "alice r md5:" + strings.Repeat("g", 32), "must be 32 hex digits"},
		{"algorithm twice", "alice r md5:" + md5Hex + " MD5:" + md5Hex, "md5 given twice for user alice"},
		{"user twice in a realm", good + "# x\nalice r sha-256:" + shaHex + "\n", "F:3: user alice in realm r is already on line 1; keep one line per user and realm"},
		{"colon in user", "al:ice r md5:" + md5Hex, `user "al:ice": no spaces`},
		{"quote in realm", `alice r" md5:` + md5Hex, `realm "r\"": no spaces`},
		{"backslash in user", `al\ice r md5:` + md5Hex, `user "al\\ice"`},
		{"control character", "al\x01ice r md5:" + md5Hex, "no spaces, control characters"},
		{"trailing comment", good[:len(good)-1] + " # comment", `"#": want ALGORITHM:HA1`},
	} {
		_, err := ParseUsers([]byte(tc.file), "F")
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
	for _, ok := range []string{"", "\n\n", "# only a comment", good} {
		if _, err := ParseUsers([]byte(ok), "F"); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

func TestUserLine(t *testing.T) {
	line := UserLine("alice", "sip.example.com", "s3cret")
	u, err := ParseUsers([]byte(line), "F")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := u.Lookup([]byte("alice"), []byte("sip.example.com"))
	for alg := MD5; alg < numAlgorithms; alg++ {
		if h, ok := a.HA1(alg); !ok || string(h) != HA1(alg, "alice", "sip.example.com", "s3cret") {
			t.Errorf("%s: %s", alg, h)
		}
	}
	if strings.Contains(line, "s3cret") {
		t.Error("the password is in the line")
	}
}

func TestAddRemoveUser(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	read := func() string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	check := func(user, realm, password string) {
		t.Helper()
		u, err := LoadUsers(path)
		if err != nil {
			t.Fatal(err)
		}
		e, ok := u.Lookup([]byte(user), []byte(realm))
		if !ok {
			t.Fatalf("%s@%s missing from\n%s", user, realm, read())
		}
		if h, _ := e.HA1(SHA256); string(h) != HA1(SHA256, user, realm, password) {
			t.Errorf("%s@%s: wrong HA1", user, realm)
		}
	}
	if err := AddUser(path, "alice", "sip.example.com", "one"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("new file mode %v", fi.Mode())
	}
	check("alice", "sip.example.com", "one")

	// Comments and other lines stay; a file without a final newline gets one.
	os.WriteFile(path, []byte("# staff\n"+read()+"\n# trunk\nbob sip.example.com md5:"+md5Hex), 0o600)
	os.Chmod(path, 0o640)
	if err := AddUser(path, "carol", "sip.example.com", "three"); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(path, "alice", "sip.example.com", "two"); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(path, "alice", "other.example.com", "four"); err != nil {
		t.Fatal(err)
	}
	check("alice", "sip.example.com", "two")
	check("alice", "other.example.com", "four")
	check("carol", "sip.example.com", "three")
	lines := strings.Split(read(), "\n")
	if len(lines) != 8 || lines[0] != "# staff" || !strings.HasPrefix(lines[1], "alice sip.example.com md5:"+HA1(MD5, "alice", "sip.example.com", "two")) ||
		lines[2] != "" || lines[3] != "# trunk" || lines[4] != "bob sip.example.com md5:"+md5Hex ||
		!strings.HasPrefix(lines[5], "carol ") || !strings.HasPrefix(lines[6], "alice other.example.com ") || lines[7] != "" {
		t.Errorf("file:\n%s", read())
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v not kept", fi.Mode())
	}
	u, _ := LoadUsers(path)
	if !strings.Contains(u.Warning(), "chmod 600 "+path) {
		t.Errorf("warning %q", u.Warning())
	}

	if err := RemoveUser(path, "alice", "sip.example.com"); err != nil {
		t.Fatal(err)
	}
	u, _ = LoadUsers(path)
	if _, ok := u.Lookup([]byte("alice"), []byte("sip.example.com")); ok || u.Len() != 3 {
		t.Errorf("after remove:\n%s", read())
	}
	err := RemoveUser(path, "alice", "sip.example.com")
	if err == nil || !strings.Contains(err.Error(), "no user alice in realm sip.example.com") {
		t.Errorf("removing a missing user: %v", err)
	}

	// Nothing is left behind in the directory.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %v", entries)
	}

	for _, tc := range []struct{ user, realm, password, err string }{
		{"al ice", "r", "p", `user "al ice"`},
		{"alice", "", "p", "empty realm"},
		{"alice", "r:1", "p", `realm "r:1"`},
		{"alice", "r", "", "empty password for user alice"},
	} {
		if err := AddUser(path, tc.user, tc.realm, tc.password); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("AddUser(%q, %q): %v, want %q", tc.user, tc.realm, err, tc.err)
		}
	}

	// A broken file is not edited.
	before := "alice r md5:xyz\n"
	os.WriteFile(path, []byte(before), 0o600)
	if err := AddUser(path, "bob", "r", "p"); err == nil || !strings.Contains(err.Error(), path+":1:") || !strings.Contains(err.Error(), "fix it before editing") {
		t.Errorf("editing a broken file: %v", err)
	}
	if read() != before {
		t.Error("broken file changed")
	}
	if err := RemoveUser(filepath.Join(dir, "missing"), "a", "r"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("removing from a missing file: %v", err)
	}
}

// The file is replaced, never written in place: a reader holding the old
// file keeps reading it whole, and a symbolic link stays a link.
func TestAddUserAtomic(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "users.real")
	link := filepath.Join(dir, "users")
	if err := AddUser(real, "alice", "r", "one"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("users.real", link); err != nil {
		t.Skip(err)
	}
	old, err := os.Open(real)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	before, _ := os.Stat(real)
	if err := AddUser(link, "bob", "r", "two"); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(real)
	if os.SameFile(before, after) {
		t.Error("file rewritten in place")
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Error("symbolic link replaced by a file")
	}
	b := make([]byte, 4096)
	n, _ := old.Read(b)
	if strings.Contains(string(b[:n]), "bob") || !strings.HasPrefix(string(b[:n]), "alice r ") {
		t.Errorf("old file changed: %q", b[:n])
	}
	u, err := LoadUsers(link)
	if err != nil || u.Len() != 2 {
		t.Fatalf("%v %v", u, err)
	}
	if u.Warning() != "" {
		t.Errorf("warning for a 0600 file: %s", u.Warning())
	}
	// A directory the temporary file cannot be made in: an error naming
	// the file, and the file unchanged.
	if os.Getuid() != 0 {
		os.Chmod(dir, 0o500)
		defer os.Chmod(dir, 0o700)
		if err := AddUser(real, "carol", "r", "three"); err == nil || !strings.Contains(err.Error(), real) {
			t.Errorf("read-only directory: %v", err)
		}
	}
}

func TestLoadUsersMissing(t *testing.T) {
	_, err := LoadUsers("/nonexistent/users")
	if err == nil || !strings.Contains(err.Error(), "users file: open /nonexistent/users: no such file") {
		t.Errorf("error %v", err)
	}
}
