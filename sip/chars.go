package sip

// Character classes of RFC 3261 §25.1, as 256-entry tables so the hot loops
// test a byte with one load.

const (
	cToken     = 1 << iota // token: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
	cAlnum                 // ALPHA / DIGIT
	cUserChar              // unreserved / escaped-start / user-unreserved (RFC 3261 user)
	cPassChar              // unreserved / "&" / "=" / "+" / "$" / ","
	cParamChar             // param-unreserved / unreserved / "%"
	cHostChar              // alphanum / "-" / "." (hostname) plus "_" seen in the wild
	cHnvChar               // header name/value chars in a URI: hnv-unreserved / unreserved / "%"
	cWordChar              // word: token chars plus ( ) < > : \ " / [ ] ? { }
	cLWS                   // SP, HT, CR, LF
)

var charClass [256]uint16

func init() {
	set := func(chars string, c uint16) {
		for i := 0; i < len(chars); i++ {
			charClass[chars[i]] |= c
		}
	}
	for ch := 'a'; ch <= 'z'; ch++ {
		charClass[ch] |= cAlnum
		charClass[ch-'a'+'A'] |= cAlnum
	}
	for ch := '0'; ch <= '9'; ch++ {
		charClass[ch] |= cAlnum
	}
	const mark = "-_.!~*'()"
	for i := 0; i < 256; i++ {
		if charClass[i]&cAlnum != 0 {
			charClass[i] |= cToken | cUserChar | cPassChar | cParamChar | cHostChar | cHnvChar | cWordChar
		}
	}
	set("-.!%*_+`'~", cToken|cWordChar)
	set("()<>:\\\"/[]?{}", cWordChar)
	set(mark+"%&=+$,;?/", cUserChar)
	set(mark+"%&=+$,", cPassChar)
	set(mark+"%[]/:&+$", cParamChar)
	set("-._", cHostChar)
	set(" \t\r\n", cLWS)
	set(mark+"%[]/?:+$", cHnvChar)
}

func isToken(c byte) bool { return charClass[c]&cToken != 0 }
func isAlnum(c byte) bool { return charClass[c]&cAlnum != 0 }
func isAlpha(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isHex(c byte) bool   { return isDigit(c) || ((c|0x20) >= 'a' && (c|0x20) <= 'f') }

// isLWS reports linear white space bytes. Header values keep their folding
// (CRLF followed by SP/HT), so views treat CR and LF inside a value as LWS.
func isLWS(c byte) bool { return charClass[c]&cLWS != 0 }

func lower(c byte) byte { return lowerTab[c] }

var lowerTab = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if i >= 'A' && i <= 'Z' {
			t[i] = byte(i) + 32
		}
	}
	return t
}()

// equalFold compares b with an ASCII string s case-insensitively without
// allocating. s is usually a lower-case constant.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

// EqualFold is equalFold for callers outside the package.
func EqualFold(b []byte, s string) bool { return equalFold(b, s) }

// trimLWS strips leading and trailing LWS.
func trimLWS(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isLWS(b[i]) {
		i++
	}
	for j > i && isLWS(b[j-1]) {
		j--
	}
	return b[i:j]
}

func skipLWS(b []byte, i int) int {
	for i < len(b) && isLWS(b[i]) {
		i++
	}
	return i
}
