package digest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// User is one line of the users file.
type User struct {
	Name  string
	Realm string
	ha1   [numAlgorithms][]byte // lower-case hex; nil when the line has none
}

// HA1 returns the user's HA1 for a, lower-case hex, and whether the users
// file has one.
func (u *User) HA1(a Algorithm) ([]byte, bool) {
	if a >= numAlgorithms || u.ha1[a] == nil {
		return nil, false
	}
	return u.ha1[a], true
}

// Algorithms returns the algorithms the user has an HA1 for, strongest
// last.
func (u *User) Algorithms() []Algorithm {
	var as []Algorithm
	for a := MD5; a < numAlgorithms; a++ {
		if u.ha1[a] != nil {
			as = append(as, a)
		}
	}
	return as
}

// Users is a loaded users file (see the package documentation for its
// format). It is read-only once loaded: a new file is a new Users.
type Users struct {
	byName  map[string][]*User // one entry per realm the name has
	all     []*User            // in file order
	warning string
}

// Lookup finds the user name in realm, as the credentials' username and
// realm parameters give them. It allocates nothing. A name or realm
// written with backslash escapes is not found (a users file cannot hold
// '\' or '"'), so such credentials fail closed.
func (u *Users) Lookup(user, realm []byte) (*User, bool) {
	for _, e := range u.byName[string(user)] {
		if e.Realm == string(realm) {
			return e, true
		}
	}
	return nil, false
}

// Len returns the number of users (lines with a user).
func (u *Users) Len() int { return len(u.all) }

// Warning is empty, or says what is wrong with the file that does not stop
// it from being used: it is readable by other users than its owner.
func (u *Users) Warning() string { return u.warning }

// All returns the users in file order.
func (u *Users) All() []*User { return u.all }

// LoadUsers reads and parses the users file at path. Errors name the file
// and line and say how to fix it.
func LoadUsers(path string) (*Users, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	u, err := ParseUsers(b, path)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		u.warning = fmt.Sprintf("users file %s is readable by others (mode %04o): its hashes are as good as passwords; chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	return u, nil
}

// ParseUsers parses the content of a users file; name is used in errors.
func ParseUsers(b []byte, name string) (*Users, error) {
	u := &Users{byName: map[string][]*User{}}
	lineOf := map[*User]int{}
	for n := 1; len(b) > 0; n++ {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		usr, err := parseUserLine(line)
		if err != nil {
			return nil, fmt.Errorf("users file %s:%d: %w", name, n, err)
		}
		if usr == nil {
			continue
		}
		for _, o := range u.byName[usr.Name] {
			if o.Realm == usr.Realm {
				return nil, fmt.Errorf("users file %s:%d: user %s in realm %s is already on line %d; keep one line per user and realm", name, n, usr.Name, usr.Realm, lineOf[o])
			}
		}
		lineOf[usr] = n
		u.byName[usr.Name] = append(u.byName[usr.Name], usr)
		u.all = append(u.all, usr)
	}
	return u, nil
}

const lineExample = "alice sip.example.com md5:<32 hex digits> sha-256:<64 hex digits>"

// parseUserLine parses one line; a comment or blank line is nil, nil.
func parseUserLine(line []byte) (*User, error) {
	f := strings.Fields(string(line))
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return nil, nil
	}
	if len(f) < 3 {
		return nil, fmt.Errorf("want USER REALM ALGORITHM:HA1..., e.g. %q (sipedge users add writes such lines)", lineExample)
	}
	if err := validName("user", f[0]); err != nil {
		return nil, err
	}
	if err := validName("realm", f[1]); err != nil {
		return nil, err
	}
	usr := &User{Name: f[0], Realm: f[1]}
	for _, pair := range f[2:] {
		alg, h, ok := strings.Cut(pair, ":")
		a, known := ParseAlgorithm([]byte(alg))
		if !ok || alg == "" || !known {
			return nil, fmt.Errorf("%q: want ALGORITHM:HA1 with algorithm md5, sha-256 or sha-512-256", pair)
		}
		if usr.ha1[a] != nil {
			return nil, fmt.Errorf("%s given twice for user %s; keep one", strings.ToLower(a.String()), usr.Name)
		}
		hx := []byte(strings.ToLower(h))
		if len(hx) != 2*a.size() || !isHex(hx) {
			return nil, fmt.Errorf("%s HA1 of user %s must be %d hex digits, H(user:realm:password); got %q (sipedge users add computes it)", strings.ToLower(a.String()), usr.Name, 2*a.size(), h)
		}
		usr.ha1[a] = hx
	}
	return usr, nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if _, ok := unhex(c); !ok {
			return false
		}
	}
	return true
}

// validName checks a user name or realm for the users file: no blanks
// (the field separator), no control characters, no ':' (the separator
// inside HA1's input), no '"' or '\' (they would need escaping in the
// header and could then be written two ways).
func validName(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == ':' || c == '"' || c == '\\' {
			return fmt.Errorf("%s %q: no spaces, control characters, ':', '\"' or '\\' allowed", what, s)
		}
	}
	return nil
}

// UserLine returns the users-file line for user in realm with password:
// an HA1 for every algorithm.
func UserLine(user, realm, password string) string {
	var b strings.Builder
	b.WriteString(user)
	b.WriteByte(' ')
	b.WriteString(realm)
	for a := MD5; a < numAlgorithms; a++ {
		b.WriteByte(' ')
		b.WriteString(strings.ToLower(a.String()))
		b.WriteByte(':')
		b.WriteString(HA1(a, user, realm, password))
	}
	return b.String()
}

// AddUser sets user's password in realm in the users file at path: the
// user's line is replaced if there is one, added at the end otherwise;
// comments and other lines stay as they are. A missing file is created
// with mode 0600. The file is replaced atomically (a temporary file in the
// same directory, renamed over it), so sipedge never reads half a file.
// Two AddUser or RemoveUser at once on one file may lose one change.
func AddUser(path, user, realm, password string) error {
	if err := validName("user", user); err != nil {
		return fmt.Errorf("users file %s: %w", path, err)
	}
	if err := validName("realm", realm); err != nil {
		return fmt.Errorf("users file %s: %w", path, err)
	}
	if password == "" {
		return fmt.Errorf("users file %s: empty password for user %s", path, user)
	}
	b, mode, err := readForEdit(path, true)
	if err != nil {
		return err
	}
	line := UserLine(user, realm, password)
	out, found := replaceLine(b, user, realm, &line)
	if !found {
		out = b
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(append(out, line...), '\n')
	}
	return writeAtomic(path, out, mode)
}

// RemoveUser removes user's line for realm from the users file at path;
// a user who is not there is an error.
func RemoveUser(path, user, realm string) error {
	b, mode, err := readForEdit(path, false)
	if err != nil {
		return err
	}
	out, found := replaceLine(b, user, realm, nil)
	if !found {
		return fmt.Errorf("users file %s: no user %s in realm %s (sipedge users list %s shows who is there)", path, user, realm, path)
	}
	return writeAtomic(path, out, mode)
}

// readForEdit reads the file and checks that it parses: an edit must not
// build on a file sipedge would refuse.
func readForEdit(path string, create bool) ([]byte, fs.FileMode, error) {
	b, err := os.ReadFile(path)
	switch {
	case create && errors.Is(err, fs.ErrNotExist):
		return nil, 0o600, nil
	case err != nil:
		return nil, 0, fmt.Errorf("users file: %w", err)
	}
	if _, err := ParseUsers(b, path); err != nil {
		return nil, 0, fmt.Errorf("%w; fix it before editing", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, fmt.Errorf("users file: %w", err)
	}
	return b, fi.Mode().Perm(), nil
}

// replaceLine returns b with the line of user in realm replaced by *with,
// or removed when with is nil.
func replaceLine(b []byte, user, realm string, with *string) ([]byte, bool) {
	var out []byte
	found := false
	for len(b) > 0 {
		line, rest, nl := bytes.Cut(b, []byte{'\n'})
		f := strings.Fields(string(line))
		if !found && len(f) >= 2 && f[0] == user && f[1] == realm {
			found = true
			if with != nil {
				out = append(out, *with...)
				out = append(out, '\n')
			}
		} else {
			out = append(out, line...)
			if nl {
				out = append(out, '\n')
			}
		}
		b = rest
	}
	return out, found
}

// writeAtomic replaces path with b: written and synced to a temporary file
// beside it, then renamed over it. A path that is a symbolic link has its
// target replaced, so the link stays.
func writeAtomic(path string, b []byte, mode fs.FileMode) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("users file %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("users file %s: %w", path, err)
	}
	// The rename is durable once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
