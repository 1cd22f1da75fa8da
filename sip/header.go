package sip

import "strings"

// HeaderKind identifies the headers the core needs to find quickly. Every
// other header is KindOther and is carried through untouched.
type HeaderKind uint8

const (
	KindOther HeaderKind = iota
	KindVia
	KindFrom
	KindTo
	KindCallID
	KindCSeq
	KindMaxForwards
	KindContentLength
	KindContentType
	KindContact
	KindRoute
	KindRecordRoute
	KindExpires
	KindRequire
	KindProxyRequire
	KindSupported
	KindUnsupported
	KindAuthorization
	KindProxyAuthorization
	KindWWWAuthenticate
	KindProxyAuthenticate
	KindDate
	KindPath
	KindMinExpires
	KindAllow
	KindUserAgent
	KindServer
	KindSessionExpires
	KindMinSE
	KindSubject
	KindContentEncoding
	KindEvent
	kindCount
)

var kindNames = [kindCount]string{
	KindOther:              "",
	KindVia:                "Via",
	KindFrom:               "From",
	KindTo:                 "To",
	KindCallID:             "Call-ID",
	KindCSeq:               "CSeq",
	KindMaxForwards:        "Max-Forwards",
	KindContentLength:      "Content-Length",
	KindContentType:        "Content-Type",
	KindContact:            "Contact",
	KindRoute:              "Route",
	KindRecordRoute:        "Record-Route",
	KindExpires:            "Expires",
	KindRequire:            "Require",
	KindProxyRequire:       "Proxy-Require",
	KindSupported:          "Supported",
	KindUnsupported:        "Unsupported",
	KindAuthorization:      "Authorization",
	KindProxyAuthorization: "Proxy-Authorization",
	KindWWWAuthenticate:    "WWW-Authenticate",
	KindProxyAuthenticate:  "Proxy-Authenticate",
	KindDate:               "Date",
	KindPath:               "Path",
	KindMinExpires:         "Min-Expires",
	KindAllow:              "Allow",
	KindUserAgent:          "User-Agent",
	KindServer:             "Server",
	KindSessionExpires:     "Session-Expires",
	KindMinSE:              "Min-SE",
	KindSubject:            "Subject",
	KindContentEncoding:    "Content-Encoding",
	KindEvent:              "Event",
}

// String returns the canonical long name of the header.
func (k HeaderKind) String() string { return kindNames[k] }

// compactKinds maps the compact forms of RFC 3261 §7.3.3 and later RFCs.
// Only those with a HeaderKind are listed; others stay KindOther.
var compactKinds = [26]HeaderKind{
	'i' - 'a': KindCallID,
	'm' - 'a': KindContact,
	'e' - 'a': KindContentEncoding,
	'l' - 'a': KindContentLength,
	'c' - 'a': KindContentType,
	'f' - 'a': KindFrom,
	's' - 'a': KindSubject,
	'k' - 'a': KindSupported,
	't' - 'a': KindTo,
	'v' - 'a': KindVia,
	'o' - 'a': KindEvent,
	'x' - 'a': KindSessionExpires,
}

// kindIndex finds a long header name by its length and first letter, so a
// lookup is one table load and usually one case-insensitive compare.
var kindIndex [20][26][]HeaderKind

// kindLower holds the lower-case long names for the comparison.
var kindLower [kindCount]string

func init() {
	for k := KindVia; k < kindCount; k++ {
		n := kindNames[k]
		kindLower[k] = strings.ToLower(n)
		c := lower(n[0]) - 'a'
		kindIndex[len(n)][c] = append(kindIndex[len(n)][c], k)
	}
}

// LookupKind returns the kind of a header name as written on the wire
// (any case, long or compact form).
func LookupKind(name []byte) HeaderKind {
	if len(name) == 0 {
		return KindOther
	}
	if len(name) == 1 {
		c := lower(name[0])
		if c >= 'a' && c <= 'z' {
			return compactKinds[c-'a']
		}
		return KindOther
	}
	// Fast path: the canonical spelling, which is what almost every
	// implementation sends (a switch on constants, no allocation).
	switch string(name) {
	case "Via":
		return KindVia
	case "From":
		return KindFrom
	case "To":
		return KindTo
	case "Call-ID":
		return KindCallID
	case "CSeq":
		return KindCSeq
	case "Max-Forwards":
		return KindMaxForwards
	case "Content-Length":
		return KindContentLength
	case "Content-Type":
		return KindContentType
	case "Contact":
		return KindContact
	case "Route":
		return KindRoute
	case "Record-Route":
		return KindRecordRoute
	case "Expires":
		return KindExpires
	case "Require":
		return KindRequire
	case "Proxy-Require":
		return KindProxyRequire
	case "Supported":
		return KindSupported
	case "Unsupported":
		return KindUnsupported
	case "Authorization":
		return KindAuthorization
	case "Proxy-Authorization":
		return KindProxyAuthorization
	case "WWW-Authenticate":
		return KindWWWAuthenticate
	case "Proxy-Authenticate":
		return KindProxyAuthenticate
	case "Date":
		return KindDate
	case "Path":
		return KindPath
	case "Min-Expires":
		return KindMinExpires
	case "Allow":
		return KindAllow
	case "User-Agent":
		return KindUserAgent
	case "Server":
		return KindServer
	case "Session-Expires":
		return KindSessionExpires
	case "Min-SE":
		return KindMinSE
	case "Subject":
		return KindSubject
	case "Content-Encoding":
		return KindContentEncoding
	case "Event":
		return KindEvent
	}
	if len(name) >= len(kindIndex) {
		return KindOther
	}
	c := lower(name[0])
	if c < 'a' || c > 'z' {
		return KindOther
	}
next:
	for _, k := range kindIndex[len(name)][c-'a'] {
		ln := kindLower[k]
		for i := 1; i < len(name); i++ {
			if lower(name[i]) != ln[i] {
				continue next
			}
		}
		return k
	}
	return KindOther
}
