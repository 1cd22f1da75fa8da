//go:build linux

package main

// -mode rtpengine sets up the same calls as -mode relay, but in a running
// rtpengine (its userspace forwarding), through the ng control protocol:
// bencoded dictionaries over UDP, each message prefixed by a cookie that
// the reply repeats. The ready file has the relay's layout, so the
// generator loads rtpengine exactly as it loads sipedge's relay.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type rtpengineOpts struct {
	calls        int
	ng           string // rtpengine's ng control address
	pid          int    // rtpengine's pid, for the ready file
	peerA, peerB string
	ready        string
}

func runRtpengine(o rtpengineOpts) error {
	if o.pid <= 0 {
		return errors.New("-ng-pid: the pid of the rtpengine under test is needed (its CPU is what is measured)")
	}
	pa, err := netip.ParseAddrPort(o.peerA)
	if err != nil {
		return err
	}
	pb, err := netip.ParseAddrPort(o.peerB)
	if err != nil {
		return err
	}
	c, err := dialNG(o.ng)
	if err != nil {
		return err
	}
	defer c.close()
	// rtpengine may still be starting: wait for it to answer a ping.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := c.call(map[string]any{"command": "ping"})
		if err == nil && r["result"] == "pong" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rtpengine at %s does not answer ping: %v", o.ng, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	l := layout{PID: o.pid, Calls: o.calls, PeerA: pa.String(), PeerB: pb.String()}
	ids := make([]string, 0, o.calls)
	cleanup := func() { c.deleteAll(ids) }
	for i := 0; i < o.calls; i++ {
		id := "rtpload-" + strconv.Itoa(i)
		ra, rb, err := c.setup(id, pa, pb)
		if err != nil {
			cleanup()
			return fmt.Errorf("call %d: %w", i, err)
		}
		ids = append(ids, id)
		l.A = append(l.A, ra.String())
		l.B = append(l.B, rb.String())
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if err := writeReady(o.ready, &l); err != nil {
		cleanup()
		return err
	}
	<-sig
	out, _ := json.Marshal(c.deleteAll(ids))
	fmt.Println(string(out))
	return nil
}

// ngClient is one ng control socket. Commands go one at a time: setup is
// not what is measured.
type ngClient struct {
	conn   *net.UDPConn
	cookie uint64
	buf    []byte
}

func dialNG(addr string) (*ngClient, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, err
	}
	return &ngClient{conn: conn, cookie: uint64(os.Getpid()) << 32, buf: make([]byte, 65536)}, nil
}

func (c *ngClient) close() { c.conn.Close() }

// call sends one command and returns the reply's dictionary. A lost
// datagram is resent with the same cookie: rtpengine keeps the replies
// to recent cookies and repeats them rather than running the command
// twice.
func (c *ngClient) call(cmd map[string]any) (map[string]any, error) {
	c.cookie++
	cookie := strconv.FormatUint(c.cookie, 36)
	msg := append([]byte(cookie+" "), bencode(cmd)...)
	var lastErr error
	for try := 0; try < 3; try++ {
		if _, err := c.conn.Write(msg); err != nil {
			return nil, err
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, err := c.conn.Read(c.buf)
			if err != nil {
				lastErr = err
				break
			}
			got, body, ok := bytes.Cut(c.buf[:n], []byte(" "))
			if !ok || string(got) != cookie {
				continue // a late reply to an earlier try
			}
			v, err := bdecode(body)
			if err != nil {
				return nil, fmt.Errorf("%s reply: %w", cmd["command"], err)
			}
			d, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s reply is not a dictionary", cmd["command"])
			}
			if d["result"] == "error" {
				return d, fmt.Errorf("%s: rtpengine: %v", cmd["command"], d["error-reason"])
			}
			return d, nil
		}
	}
	return nil, fmt.Errorf("%s: no reply: %w", cmd["command"], lastErr)
}

// setup offers a call from side A (the generator's A endpoints at pa)
// and answers it from side B (pb), as a SIP proxy would around an INVITE
// and its 200. It returns rtpengine's address for each side: a is where
// A sends (from the answer rtpengine rewrote for A), b where B sends
// (from the offer rewritten for B).
func (c *ngClient) setup(id string, pa, pb netip.AddrPort) (a, b netip.AddrPort, err error) {
	common := map[string]any{
		"call-id": id,
		// A plain RTP/AVP relay between the two SDP addresses: the
		// address on this host put in the c= lines and the origin, no
		// ICE candidates added. Learning the source of the media (the
		// default, symmetric RTP) stays on, as deployed behind NAT.
		"replace":            []any{"origin", "session-connection"},
		"ICE":                "remove",
		"transport-protocol": "RTP/AVP",
	}
	offer := cloneDict(common)
	offer["command"] = "offer"
	offer["from-tag"] = "a-" + id
	offer["sdp"] = rtpSDP(pa)
	r, err := c.call(offer)
	if err != nil {
		return a, b, err
	}
	if b, err = sdpAudio(str(r["sdp"])); err != nil {
		return a, b, fmt.Errorf("offer: %w", err)
	}
	answer := cloneDict(common)
	answer["command"] = "answer"
	answer["from-tag"] = "a-" + id
	answer["to-tag"] = "b-" + id
	answer["sdp"] = rtpSDP(pb)
	if r, err = c.call(answer); err != nil {
		return a, b, err
	}
	if a, err = sdpAudio(str(r["sdp"])); err != nil {
		return a, b, fmt.Errorf("answer: %w", err)
	}
	return a, b, nil
}

// rtpengineStats is what -mode rtpengine prints when it stops: the RTP
// rtpengine received for these calls (query replies, summed), and its
// own totals since it started (the statistics command).
type rtpengineStats struct {
	Calls          int   `json:"calls"`
	Deleted        int   `json:"deleted"`
	Failed         int   `json:"delete_failed,omitempty"`
	RTPPackets     int64 `json:"rtp_packets"`
	RTPBytes       int64 `json:"rtp_bytes"`
	RTPErrors      int64 `json:"rtp_errors"`
	RelayedUser    int64 `json:"relayed_packets_user"`
	RelayedErrUser int64 `json:"relayed_packet_errors_user"`
	RelayedKernel  int64 `json:"relayed_packets_kernel"`
}

// deleteAll ends every call, reading its totals first (a delete does not
// return them), and then rtpengine's overall counters.
func (c *ngClient) deleteAll(ids []string) rtpengineStats {
	st := rtpengineStats{Calls: len(ids)}
	for _, id := range ids {
		if r, err := c.call(map[string]any{"command": "query", "call-id": id}); err == nil {
			rtp := dict(dict(r["totals"])["RTP"])
			st.RTPPackets += num(rtp["packets"])
			st.RTPBytes += num(rtp["bytes"])
			st.RTPErrors += num(rtp["errors"])
		}
		if _, err := c.call(map[string]any{"command": "delete", "call-id": id, "delete-delay": 0}); err != nil {
			st.Failed++
			continue
		}
		st.Deleted++
	}
	if r, err := c.call(map[string]any{"command": "statistics"}); err == nil {
		tot := dict(dict(r["statistics"])["totalstatistics"])
		st.RelayedUser = num(tot["relayedpackets_user"])
		st.RelayedErrUser = num(tot["relayedpacketerrors_user"])
		st.RelayedKernel = num(tot["relayedpackets_kernel"])
	}
	return st
}

func dict(v any) map[string]any {
	d, _ := v.(map[string]any)
	return d
}

func num(v any) int64 {
	n, _ := v.(int64)
	return n
}

// rtpSDP is a G.711 µ-law offer or answer for one endpoint (RFC 4566;
// RFC 3551 for payload type 0 and 20 ms packets).
func rtpSDP(ep netip.AddrPort) string {
	ip := "IP4"
	if ep.Addr().Is6() {
		ip = "IP6"
	}
	return "v=0\r\n" +
		"o=- 1 1 IN " + ip + " " + ep.Addr().String() + "\r\n" +
		"s=-\r\n" +
		"c=IN " + ip + " " + ep.Addr().String() + "\r\n" +
		"t=0 0\r\n" +
		"m=audio " + strconv.Itoa(int(ep.Port())) + " RTP/AVP 0\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=ptime:20\r\n" +
		"a=sendrecv\r\n"
}

// sdpAudio returns the RTP address of the first audio section: its m=
// port and the connection address of the section, or the session's when
// the section has none (RFC 4566 §5.7).
func sdpAudio(sdp string) (netip.AddrPort, error) {
	var session, media string
	port := -1
	inMedia := false // past the first m= line
lines:
	for _, line := range strings.Split(sdp, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "m="):
			if port >= 0 {
				break lines // the audio section is complete
			}
			inMedia = true
			f := strings.Fields(line[2:])
			if len(f) >= 2 && f[0] == "audio" {
				p, err := strconv.Atoi(f[1])
				if err != nil || p <= 0 || p > 65535 {
					return netip.AddrPort{}, fmt.Errorf("bad m= line %q", line)
				}
				port = p
			}
		case strings.HasPrefix(line, "c="):
			f := strings.Fields(line[2:])
			if len(f) < 3 {
				return netip.AddrPort{}, fmt.Errorf("bad c= line %q", line)
			}
			if !inMedia {
				session = f[2]
			} else if port >= 0 && media == "" {
				media = f[2]
			}
		}
	}
	if port < 0 {
		return netip.AddrPort{}, errors.New("no audio section in the SDP")
	}
	if media == "" {
		media = session
	}
	addr, err := netip.ParseAddr(media)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("connection address: %w", err)
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

func cloneDict(d map[string]any) map[string]any {
	out := make(map[string]any, len(d)+4)
	for k, v := range d {
		out[k] = v
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// Bencode (the ng protocol's encoding): integers i<decimal>e, strings
// <length>:<bytes>, lists l...e, dictionaries d...e with keys in byte
// order.

// bencode encodes strings, byte slices, integers, lists ([]any,
// []string) and dictionaries (map[string]any); it panics on any other
// type, which is a programming error here.
func bencode(v any) []byte { return appendBencode(nil, v) }

func appendBencode(b []byte, v any) []byte {
	switch x := v.(type) {
	case string:
		b = strconv.AppendInt(b, int64(len(x)), 10)
		return append(append(b, ':'), x...)
	case []byte:
		b = strconv.AppendInt(b, int64(len(x)), 10)
		return append(append(b, ':'), x...)
	case int:
		return append(strconv.AppendInt(append(b, 'i'), int64(x), 10), 'e')
	case int64:
		return append(strconv.AppendInt(append(b, 'i'), x, 10), 'e')
	case []any:
		b = append(b, 'l')
		for _, e := range x {
			b = appendBencode(b, e)
		}
		return append(b, 'e')
	case []string:
		b = append(b, 'l')
		for _, e := range x {
			b = appendBencode(b, e)
		}
		return append(b, 'e')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, 'd')
		for _, k := range keys {
			b = appendBencode(b, k)
			b = appendBencode(b, x[k])
		}
		return append(b, 'e')
	}
	panic(fmt.Sprintf("bencode: cannot encode %T", v))
}

// maxBencodeDepth bounds the nesting of lists and dictionaries, so that
// a hostile input cannot exhaust the stack.
const maxBencodeDepth = 64

// bdecode decodes one value that must fill b: strings become string,
// integers int64, lists []any, dictionaries map[string]any. It accepts
// only the canonical form of integers (no leading zeros, no -0), so
// encoding what it returns gives back a value equal to it; dictionary
// keys may come in any order, and a repeated key is an error.
func bdecode(b []byte) (any, error) {
	v, n, err := decodeValue(b, 0)
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, fmt.Errorf("bencode: %d bytes after the value", len(b)-n)
	}
	return v, nil
}

var errShort = errors.New("bencode: truncated")

func decodeValue(b []byte, depth int) (any, int, error) {
	if len(b) == 0 {
		return nil, 0, errShort
	}
	switch c := b[0]; {
	case c == 'i':
		end := bytes.IndexByte(b, 'e')
		if end < 0 {
			return nil, 0, errShort
		}
		v, err := parseCanonicalInt(b[1:end])
		if err != nil {
			return nil, 0, err
		}
		return v, end + 1, nil
	case c >= '0' && c <= '9':
		s, n, err := decodeString(b)
		if err != nil {
			return nil, 0, err
		}
		return s, n, nil
	case c == 'l' || c == 'd':
		if depth >= maxBencodeDepth {
			return nil, 0, errors.New("bencode: nested too deep")
		}
		var list []any
		var dict map[string]any
		if c == 'l' {
			list = []any{}
		} else {
			dict = map[string]any{}
		}
		i := 1
		for {
			if i >= len(b) {
				return nil, 0, errShort
			}
			if b[i] == 'e' {
				i++
				break
			}
			var key string
			if dict != nil {
				if b[i] < '0' || b[i] > '9' {
					return nil, 0, errors.New("bencode: dictionary key is not a string")
				}
				k, n, err := decodeString(b[i:])
				if err != nil {
					return nil, 0, err
				}
				if _, dup := dict[k]; dup {
					return nil, 0, fmt.Errorf("bencode: key %q repeated", k)
				}
				key = k
				i += n
			}
			v, n, err := decodeValue(b[i:], depth+1)
			if err != nil {
				return nil, 0, err
			}
			i += n
			if dict != nil {
				dict[key] = v
			} else {
				list = append(list, v)
			}
		}
		if dict != nil {
			return dict, i, nil
		}
		return list, i, nil
	}
	return nil, 0, fmt.Errorf("bencode: unexpected byte %q", b[0])
}

func decodeString(b []byte) (string, int, error) {
	colon := bytes.IndexByte(b, ':')
	if colon < 0 {
		return "", 0, errShort
	}
	ln := b[:colon]
	if len(ln) > 1 && ln[0] == '0' {
		return "", 0, errors.New("bencode: string length with a leading zero")
	}
	n := 0
	for _, d := range ln {
		if d < '0' || d > '9' {
			return "", 0, fmt.Errorf("bencode: bad string length %q", ln)
		}
		if n > (len(b)-colon-1-int(d-'0'))/10 {
			return "", 0, errShort // longer than what is left
		}
		n = n*10 + int(d-'0')
	}
	start := colon + 1
	if n > len(b)-start {
		return "", 0, errShort
	}
	return string(b[start : start+n]), start + n, nil
}

func parseCanonicalInt(d []byte) (int64, error) {
	s := string(d)
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || (len(digits) > 1 && digits[0] == '0') || s == "-0" || digits[0] == '+' {
		return 0, fmt.Errorf("bencode: bad integer %q", s)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bencode: bad integer %q", s)
	}
	return v, nil
}
