// Package digest is SIP's HTTP Digest authentication (RFC 3261 §22 on top
// of RFC 2617 and RFC 7616, with the SHA-2 algorithms of RFC 8760): both
// the server side (challenges, nonces, verification, replay protection)
// and the client side (answering a challenge), plus the users file the
// server side reads its secrets from.
//
// # Server side
//
// A request without credentials, or with credentials that fail, is
// answered 401 (407 from a proxy) with one WWW-Authenticate
// (Proxy-Authenticate) header per algorithm offered, each built by
// AppendChallenge with a nonce from Nonces.Append. A request with an
// Authorization (Proxy-Authorization) header is checked in this order:
//
//  1. ParseCredentials on the header value (a syntax error: 400; ErrNotDigest
//     or ErrUnsupported: challenge again);
//  2. Credentials.Realm is the realm served and Credentials.URI is the
//     Request-URI (RFC 2617 §3.2.2.5), otherwise challenge again;
//  3. Nonces.Check: an invalid nonce gets a new challenge, a stale one a
//     new challenge with stale=true (RFC 2617 §3.2.1), so the phone retries
//     with the same password without asking its user;
//  4. Users.Lookup and User.HA1 for Credentials.Algorithm, then
//     Credentials.Verify with the request's method;
//  5. Counter.Use with the nonce and nonce count: false means a replayed
//     (or forgotten) nonce, answered with a new challenge with stale=true.
//
// Nonces carry no per-nonce state: a nonce is its issue time and a MAC of
// that time and the realm under a key of the server's, so any nonce that
// comes back can be checked with the key alone, across every process that
// shares the key. Replay protection needs state, but only for nonces that
// already authenticated someone (step 5 comes after step 4), so strangers
// cannot fill the table.
//
// Verification, nonce checks and the replay check allocate nothing: the
// header value is parsed into views of its own bytes, hashes come from
// pools, and every intermediate value lives in the pooled scratch space.
// Quoted values keep their backslash escapes as written (the message
// layer's rule: escapes are decoded exactly once, at the point of use);
// Verify decodes them while hashing.
//
// # Client side
//
// ParseChallenge reads a WWW-Authenticate or Proxy-Authenticate value,
// ChooseChallenge picks the strongest of several (SHA-512-256, then
// SHA-256, then MD5), and Challenge.Authorize writes the Authorization
// value for a request.
//
// # The users file
//
// The server side never needs a password, only HA1 = H(user:realm:password)
// for each algorithm, so the users file holds those and nothing else. One
// user per line, fields separated by spaces or tabs:
//
//	# user  realm            algorithm:HA1 ... (one or more)
//	alice   sip.example.com  md5:<32 hex> sha-256:<64 hex> sha-512-256:<64 hex>
//
// Lines starting with # (after optional blanks) and blank lines are
// ignored. A user name and a realm contain no blanks, control characters,
// ':', '"' or '\'. The same user name may appear once per realm: a user
// belongs to the realm of its line, and Users.Lookup takes the user and
// the realm the credentials name. Algorithms are md5, sha-256 and
// sha-512-256 (any case); a user can answer only the algorithms its line
// lists. HA1 values are hex, either case. An HA1 is as good as the password
// for this realm, so the file should be readable by sipedge alone
// (mode 0600); Users.Warning says when it is not. AddUser and RemoveUser
// (the `sipedge users` command) edit the file in place, atomically, keeping
// its comments and other lines.
package digest
