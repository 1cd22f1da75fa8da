package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"sipedge/digest"
)

// stdin is where "sipedge users add" reads the password; tests replace it.
var stdin io.Reader = os.Stdin

const usersUsage = `sipedge users — manage the users file of digest authentication

Usage:
  sipedge users add FILE USER --realm REALM      set USER's password (read from stdin)
  sipedge users remove FILE USER --realm REALM   remove USER from REALM
  sipedge users list FILE                        show users, realms and algorithms

The users file holds, per user and realm, the digest hashes of the password
(HA1 for MD5, SHA-256 and SHA-512-256), never the password itself; see
docs/CONFIG.md. add reads the password as one line from stdin (a trailing
newline is removed; an empty password is refused), computes the hashes and
replaces the user's line, or adds one; remove deletes it. Both keep every
other line and comment and replace the file atomically; a missing file is
created with mode 0600. The realm must be the one phones are challenged
with: it is part of every hash, so a user added for another realm cannot
log in. A user may have lines for several realms.

Exit status: 0 done, 1 the file could not be read or written (or the user
to remove is not there), 2 wrong usage.

Examples:
  printf '%s\n' 's3cret' | sipedge users add /etc/sipedge/users alice --realm sip.example.com
  sipedge users remove /etc/sipedge/users alice --realm sip.example.com
  sipedge users list /etc/sipedge/users
`

// maxPassword bounds the line read from stdin.
const maxPassword = 1024

// runUsers is "sipedge users".
func runUsers(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "sipedge users: want add, remove or list (see sipedge users --help)\n")
		return 2
	}
	cmd := args[0]
	if cmd == "-h" || cmd == "-help" || cmd == "--help" || cmd == "help" {
		io.WriteString(stdout, usersUsage)
		return 0
	}
	fs := flag.NewFlagSet("sipedge users "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	realm := fs.String("realm", "", "the `realm` the user belongs to (required for add and remove)")
	var pos []string
	rest := args[1:]
	for {
		// Flags may come before, between or after FILE and USER.
		err := fs.Parse(rest)
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, usersUsage)
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "sipedge users %s: %v (see sipedge users --help)\n", cmd, err)
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	want := map[string]int{"add": 2, "remove": 2, "list": 1}
	n, known := want[cmd]
	switch {
	case !known:
		fmt.Fprintf(stderr, "sipedge users: unknown command %q: want add, remove or list (see sipedge users --help)\n", cmd)
		return 2
	case len(pos) != n && n == 2:
		fmt.Fprintf(stderr, "sipedge users %s: want FILE USER --realm REALM (see sipedge users --help)\n", cmd)
		return 2
	case len(pos) != n:
		fmt.Fprintf(stderr, "sipedge users list: want FILE (see sipedge users --help)\n")
		return 2
	case cmd != "list" && *realm == "":
		fmt.Fprintf(stderr, "sipedge users %s: --realm REALM is required: the realm phones are challenged with (see sipedge users --help)\n", cmd)
		return 2
	case cmd == "list" && *realm != "":
		fmt.Fprintf(stderr, "sipedge users list: --realm is not used by list (see sipedge users --help)\n")
		return 2
	}
	file := pos[0]
	switch cmd {
	case "add":
		password, err := readPassword(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "sipedge users add: %v\n", err)
			return 2
		}
		if err := digest.AddUser(file, pos[1], *realm, password); err != nil {
			fmt.Fprintf(stderr, "sipedge users add: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: user %s set in realm %s\n", file, pos[1], *realm)
	case "remove":
		if err := digest.RemoveUser(file, pos[1], *realm); err != nil {
			fmt.Fprintf(stderr, "sipedge users remove: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: user %s removed from realm %s\n", file, pos[1], *realm)
	case "list":
		u, err := digest.LoadUsers(file)
		if err != nil {
			fmt.Fprintf(stderr, "sipedge users list: %v\n", err)
			return 1
		}
		if w := u.Warning(); w != "" {
			fmt.Fprintf(stderr, "sipedge users list: warning: %s\n", w)
		}
		var out bytes.Buffer
		for _, e := range u.All() {
			var algs []string
			for _, a := range e.Algorithms() {
				algs = append(algs, strings.ToLower(a.String()))
			}
			fmt.Fprintf(&out, "%s\t%s\t%s\n", e.Name, e.Realm, strings.Join(algs, ","))
		}
		stdout.Write(out.Bytes())
	}
	return 0
}

// readPassword reads one line: the password, without its line end.
func readPassword(r io.Reader) (string, error) {
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(os.Stderr, "password (shown as typed; end with Enter): ")
		}
	}
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxPassword+2), maxPassword+2).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("reading the password from stdin: %v", err)
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	switch {
	case len(line) > maxPassword:
		return "", fmt.Errorf("password longer than %d bytes", maxPassword)
	case line == "":
		return "", errors.New("empty password on stdin; give it as one line, e.g. printf '%s\\n' 's3cret' | sipedge users add FILE USER --realm REALM")
	}
	return line, nil
}
