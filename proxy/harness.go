package proxy

import (
	"net/netip"

	"sipedge/sip"
	"sipedge/transport"
)

// A harness for table tests of stages and hooks (the core's and the
// feature packages'): a request made from bytes, with no socket behind it,
// whose local answers are captured; and the branch, reply and failure
// views hooks see, carrying the request's notes.

// TestRequest parses msg as a request that came from src over proto. What
// a stage answers goes to respond instead of a socket. Policy is the
// core's current one.
func (c *Core) TestRequest(msg []byte, src netip.AddrPort, proto transport.Proto, respond func(code int, b []byte)) (*Request, error) {
	r := &Request{core: c, pol: c.policy.Load(), capture: respond,
		pkt: &transport.Packet{Data: msg, Proto: proto, Src: src}}
	if err := r.msg.Parse(msg, r.pol.Limits); err != nil {
		return nil, err
	}
	r.via, _ = r.msg.TopVia()
	return r, nil
}

// TestBranch is the view a branch hook gets of a copy of r sent to t from
// local.
func (r *Request) TestBranch(t *Target, local netip.AddrPort) *Branch {
	r.msg.ResetEdits()
	return &Branch{Msg: &r.msg, Via: &r.via, Src: r.pkt.Src, InProto: r.pkt.Proto, Target: t, Local: local,
		RecordRoute: isDialogCreating(r.msg.MethodKind()) && !r.InDialog(), notes: &r.notes}
}

// TestReply is the view a reply hook gets of resp, answering r through a
// branch to t; first marks the context's first 2xx.
func (r *Request) TestReply(resp *sip.Message, t *Target, first bool) *Reply {
	resp.ResetEdits()
	code := resp.StatusCode()
	return &Reply{Req: &r.msg, ReqVia: &r.via, Src: r.pkt.Src, InProto: r.pkt.Proto, Resp: resp, Code: code, Target: t,
		Initial: isDialogCreating(r.msg.MethodKind()) && !r.InDialog(), First2xx: first && code >= 200 && code < 300,
		WantDialog: r.wantDialog, notes: &r.notes}
}

// TestFailure is the view a failure hook gets when r ends with code.
func (r *Request) TestFailure(code int) *Failure {
	return &Failure{Req: &r.msg, Code: code, notes: &r.notes}
}
