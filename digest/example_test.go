package digest_test

import (
	"fmt"
	"time"

	"sipedge/digest"
)

// The server side of one REGISTER, with the client side answering.
func Example() {
	const realm = "sip.example.com"
	users, _ := digest.ParseUsers([]byte(digest.UserLine("alice", realm, "s3cret")+"\n"), "users")
	nonces := digest.NewNonces([]byte("a key shared by the servers"), 5*time.Minute)
	counter := digest.NewCounter(100_000, 5*time.Minute)
	now := time.Now()

	// 401 with a challenge; the phone answers it.
	nonce := nonces.Append(nil, realm, now)
	challenge := digest.AppendChallenge(nil, digest.SHA256, realm, nonce, false)
	ch, _ := digest.ParseChallenge(challenge)
	header := ch.Authorize(nil, "alice", "s3cret", []byte("REGISTER"), []byte("sip:sip.example.com"), []byte("8Fz1"), 1)

	// The REGISTER with its Authorization value.
	check := func(header []byte, method, requestURI string) string {
		c, err := digest.ParseCredentials(header)
		if err != nil {
			return "400 or a new challenge: " + err.Error()
		}
		if string(c.Realm) != realm || string(c.URI) != requestURI {
			return "new challenge: other realm or uri"
		}
		switch valid, stale := nonces.Check(c.Nonce, realm, now); {
		case stale:
			return "new challenge, stale=true"
		case !valid:
			return "new challenge"
		}
		u, ok := users.Lookup(c.Username, c.Realm)
		if !ok {
			return "new challenge: unknown user"
		}
		ha1, ok := u.HA1(c.Algorithm)
		if !ok || !c.Verify(ha1, []byte(method)) {
			return "new challenge: wrong password"
		}
		if !counter.Use(c.Nonce, c.NC, now) {
			return "new challenge, stale=true: replayed"
		}
		return "authenticated " + u.Name
	}
	fmt.Println(check(header, "REGISTER", "sip:sip.example.com"))
	fmt.Println(check(header, "REGISTER", "sip:sip.example.com"))
	fmt.Println(check(header, "INVITE", "sip:sip.example.com"))
	// Output:
	// authenticated alice
	// new challenge, stale=true: replayed
	// new challenge: wrong password
}
