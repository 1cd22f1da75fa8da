package trunk

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"sipedge/proxy"
	"sipedge/sip"
)

// When sipedge answers a provider's challenge to an INVITE, the INVITE the
// provider accepts has the caller's CSeq number plus one (RFC 3261 §22.2,
// done by the core: proxy.Target.Auth). The caller does not know: its ACK
// of the 2xx must carry the number of the INVITE it acknowledges (§13.2.2.4)
// and its later requests must not go below it (§12.2.2). So for each such
// dialog the caller's requests towards the provider get their CSeq shifted
// by one (the branch hook "trunk-cseq", which also sees the ACK of a 2xx
// forwarded without a transaction), and the responses to them get the
// caller's number back (the reply hook "trunk-cseq"). Requests from the
// provider's side are in its own CSeq space and are left alone. Kamailio's
// dialog module does the same with track_cseq_updates.

// shifts holds the dialogs whose INVITE was sent again with credentials,
// by Call-ID and the caller's From tag. It is a leaf: taken briefly,
// nothing sent under it.
type shifts struct {
	mu sync.Mutex
	m  map[string]shift
	n  atomic.Int32 // len(m): the hooks skip the lock while it is 0
}

type shift struct {
	delta uint32
	at    time.Time
}

// maxShifts bounds the table; maxShiftAge forgets a dialog nobody saw end
// (no BYE through sipedge, no dialog feature to say so).
const (
	maxShifts   = 100000
	maxShiftAge = 24 * time.Hour
)

func shiftKey(callID, fromTag []byte) string {
	return string(proxy.AppendKey(nil, callID, fromTag))
}

// add records that the dialog's INVITE went out with the next CSeq.
func (s *shifts) add(resp *sip.Message) {
	from, err := resp.From()
	if err != nil {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]shift{}
	}
	if len(s.m) >= maxShifts {
		for k, v := range s.m {
			if now.Sub(v.at) > maxShiftAge {
				delete(s.m, k)
			}
		}
		if len(s.m) >= maxShifts {
			return
		}
	}
	s.m[shiftKey(resp.CallID(), from.Tag)] = shift{delta: 1, at: now}
	s.n.Store(int32(len(s.m)))
}

func (s *shifts) get(callID, fromTag []byte) (uint32, bool) {
	if s.n.Load() == 0 {
		return 0, false
	}
	var buf [128]byte
	k := proxy.AppendKey(buf[:0], callID, fromTag)
	s.mu.Lock()
	v, ok := s.m[string(k)]
	s.mu.Unlock()
	return v.delta, ok
}

func (s *shifts) remove(callID, tag []byte) {
	if s.n.Load() == 0 {
		return
	}
	var buf [128]byte
	k := proxy.AppendKey(buf[:0], callID, tag)
	s.mu.Lock()
	delete(s.m, string(k))
	s.n.Store(int32(len(s.m)))
	s.mu.Unlock()
}

// branch is the branch hook "trunk-cseq": a caller's request inside a
// shifted dialog goes with its CSeq plus the shift.
func (f *Feature) branch(b *proxy.Branch) error {
	if f.shifts.n.Load() == 0 {
		return nil
	}
	callID, fromTag, toTag, ok := proxy.DialogIDs(b.Msg)
	if !ok || len(toTag) == 0 {
		return nil
	}
	d, ok := f.shifts.get(callID, fromTag)
	if !ok {
		return nil
	}
	n, _ := b.Msg.CSeq()
	return setCSeq(b.Msg, n+d)
}

// reply is the reply hook "trunk-cseq": the response to a shifted request
// goes upstream with the caller's number; a final answer to a BYE, or a
// failed INVITE, ends the dialog's entry.
func (f *Feature) reply(rp *proxy.Reply) error {
	if f.shifts.n.Load() == 0 {
		return nil
	}
	callID, fromTag, toTag, ok := proxy.DialogIDs(rp.Req)
	if !ok || len(toTag) == 0 {
		return nil
	}
	if _, ok := f.shifts.get(callID, fromTag); !ok {
		if rp.Req.MethodKind() == sip.BYE && rp.Code >= 200 {
			f.shifts.remove(callID, toTag) // the provider ended the call
		}
		return nil
	}
	if rp.Req.MethodKind() == sip.BYE && rp.Code >= 200 {
		f.shifts.remove(callID, fromTag)
	}
	n, _ := rp.Req.CSeq()
	return setCSeq(rp.Resp, n)
}

// failed is the failure hook "trunk": an INVITE that ends without a 2xx
// made no dialog.
func (f *Feature) failed(fl *proxy.Failure) {
	if f.shifts.n.Load() == 0 || fl.Req.MethodKind() != sip.INVITE {
		return
	}
	if callID, fromTag, toTag, ok := proxy.DialogIDs(fl.Req); ok && len(toTag) == 0 {
		f.shifts.remove(callID, fromTag)
	}
}

// ended forgets a dialog another feature saw end (proxy.Hooks.DialogEnded).
func (f *Feature) ended(callID, fromTag string) {
	f.shifts.remove([]byte(callID), []byte(fromTag))
}

// setCSeq schedules the replacement of the CSeq number of m with n.
func setCSeq(m *sip.Message, n uint32) error {
	i := m.Find(sip.KindCSeq)
	if i < 0 {
		return nil
	}
	s, e := m.HeaderValueSpan(i)
	b := m.Bytes()
	d := s
	for d < e && b[d] >= '0' && b[d] <= '9' {
		d++
	}
	var num [10]byte
	return m.Replace(s, d, strconv.AppendUint(num[:0], uint64(n), 10))
}
