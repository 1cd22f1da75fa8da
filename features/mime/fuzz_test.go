package mime

import (
	"testing"
)

// FuzzMultipart: any Content-Type and body give 0, 415, or 400 with a
// reason, without panicking, and the splitter's parts are ordered slices
// of the body. Seeds are in testdata/fuzz/FuzzMultipart.
func FuzzMultipart(f *testing.F) {
	f.Add("multipart/mixed;boundary=b", []byte(multipart("b", part("application/sdp", sdpBody), part("application/isup", "\x00\x01"))))
	f.Add("multipart/mixed;boundary=o", []byte(multipart("o", "Content-Type: multipart/alternative;boundary=i\r\n\r\n"+
		multipart("i", part("text/plain", "a"), part("application/x-evil", "b")))))
	f.Add("multipart/related; boundary=\"a b\"", []byte("pre\n--a b\nContent-Type: text/plain\n\nx\n--a b--\n"))
	f.Add("multipart/mixed;boundary=b", []byte("--b\r\n\r\n--b"))
	f.Add("application/sdp", []byte(sdpBody))
	l := mustCompile(f, "application/*", "multipart/*", "text/plain")
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		parts := 0
		code, why := l.checkBody([]byte(ct), body, 0, &parts)
		switch {
		case code == 0 || code == 415:
			if why != "" {
				t.Fatalf("%d with reason %q", code, why)
			}
		case code == 400:
			if why == "" {
				t.Fatal("400 without a reason")
			}
		default:
			t.Fatalf("code %d", code)
		}
		if parts > maxParts+1 {
			t.Fatalf("%d parts walked, limit %d", parts, maxParts)
		}
		_, _, params, ok := splitType([]byte(ct))
		if !ok {
			return
		}
		b, found, ok := param(params, "boundary")
		if !found || !ok || len(b) == 0 || len(b) > maxBoundary {
			return
		}
		s := newSplitter(body, append([]byte("--"), b...))
		last := 0
		for n := 0; ; n++ {
			p, more, _ := s.next()
			if !more {
				break
			}
			if n > len(body) {
				t.Fatal("splitter does not end")
			}
			if len(p) > 0 {
				off := cap(body) - cap(p)
				if off < last || off+len(p) > len(body) {
					t.Fatalf("part at %d..%d, previous ended at %d, body %d", off, off+len(p), last, len(body))
				}
				last = off + len(p)
			}
			splitPart(p)
		}
	})
}
