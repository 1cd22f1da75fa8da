package proxy

import (
	"net/netip"
	"strconv"

	"sipedge/sip"
)

// Topology hiding of Vias (Target.HideVias): the next hop gets only
// sipedge's Via, and each response of the branch goes upstream with the
// Vias of the request as sipedge received them (with the received and
// rport it adds, RFC 3261 §18.2.1, RFC 3581 §4) in place of whatever
// Vias the response carries below ours. A response must carry the
// request's Vias (§8.2.6.2, §16.7 step 3): they are taken from the
// response context, never from the hidden side's response.

// appendRequestVias writes the Via header fields of m as the core forwards
// them ("Via: value" CRLF each), the top value fixed for src.
func appendRequestVias(dst []byte, m *sip.Message, via *sip.Via, src netip.AddrPort) []byte {
	first := true
	for i := m.Find(sip.KindVia); i >= 0; i = m.FindNext(sip.KindVia, i) {
		v := m.HeaderValue(i)
		dst = append(dst, "Via: "...)
		if first {
			first = false
			k := sip.SplitComma(v)
			dst = appendFixedVia(dst, m, v[:k], via, src)
			v = v[k:]
		}
		dst = append(dst, v...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// appendFixedVia writes the top Via value top with what fixTopVia would
// add to it: the port of an empty rport and received.
func appendFixedVia(dst []byte, m *sip.Message, top []byte, via *sip.Via, src netip.AddrPort) []byte {
	base := m.Offset(top)
	rest := top
	if via.HasRPort && via.RPort == 0 && base >= 0 {
		for ps := via.Params; ; {
			name, val, r, ok, _ := ps.Next()
			if !ok {
				break
			}
			if sip.EqualFold(name, "rport") && val == nil {
				if off := m.Offset(name) - base; off >= 0 && off+len(name) <= len(top) {
					dst = append(dst, top[:off+len(name)]...)
					dst = append(dst, '=')
					dst = strconv.AppendUint(dst, uint64(src.Port()), 10)
					rest = top[off+len(name):]
				}
				break
			}
			ps = r
		}
	}
	dst = append(dst, trimSpaceRight(rest)...)
	if via.NeedsReceived(src.Addr()) {
		dst = append(dst, ";received="...)
		dst = src.Addr().Unmap().AppendTo(dst)
	}
	return dst
}

// deleteVias schedules the removal of every Via header field of m.
func deleteVias(m *sip.Message) error {
	for i := m.Find(sip.KindVia); i >= 0; i = m.FindNext(sip.KindVia, i) {
		if err := m.DeleteHeader(i); err != nil {
			return err
		}
	}
	return nil
}

// replaceVias writes the response m with the Via header fields vias (from
// appendRequestVias) instead of its own, after the edits already
// scheduled on it (reply hooks). As in stripTopVia, the Vias must be
// right whatever else happens: hook edits that overlap them are dropped.
func (c *Core) replaceVias(dst []byte, m *sip.Message, vias []byte) []byte {
	at := m.Find(sip.KindVia)
	if at < 0 {
		return m.AppendTo(dst)
	}
	start, _ := m.HeaderLine(at)
	if deleteVias(m) != nil || m.Insert(start, vias) != nil {
		c.stats.HookErrors.Add(1)
		c.log.Warn("response edits dropped: they overlap the Vias", "call_id", string(m.CallID()))
		m.ResetEdits()
		_ = deleteVias(m)
		_ = m.Insert(start, vias)
	}
	return m.AppendTo(dst)
}

func trimSpaceRight(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}
