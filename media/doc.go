// Package media is sipedge's RTP relay: for each media stream of a call it
// binds a port pair (RTP even, RTCP odd) towards each side, advertised in
// the SDP that side receives, and forwards side A's packets to side B and
// back, without touching payloads (SRTP passes as it is).
//
// # Design
//
// The design is the one docs/relay-limits.md (shared docs) measured as
// the cheapest that keeps the classic SDP model of a port pair per leg
// ("b-tick"):
//
//   - Raw non-blocking sockets from golang.org/x/sys/unix, not net.UDPConn:
//     the Go netpoller wakes a goroutine per packet, which on the
//     virtualized 2-vCPU host costs more than the forwarding itself.
//   - Config.Workers locked OS threads, each with its own edge-triggered
//     epoll set. A stream's four sockets all belong to one thread, so one
//     mutex guards both directions.
//   - Under load a thread polls epoll with timeout 0, drains each ready
//     socket with recvmmsg and forwards the batch with one sendmmsg, then
//     sleeps one Config.Tick (nanosleep): one wake-up per tick serves every
//     packet that arrived meanwhile, instead of one per packet. Under light
//     load (less than a packet per two ticks) it blocks in epoll_wait
//     instead, so a relay with few calls or none costs next to nothing.
//   - With LatchFirst a socket is connect()ed to the source it latched: the
//     kernel then enforces the latch and sends skip the route lookup
//     (about 10 % less relay CPU and lower p99 latency at 2000 calls).
//   - Control operations (Stream, SetPeer, Close, Stats) take the thread's
//     mutex, which the thread releases only while it sleeps: they wait at
//     most one round, and no socket is closed while the thread uses it. A
//     round is bounded (8 full epoll batches), so under overload they still
//     get in; the in-kernel path's goroutine does not wait at all: it posts
//     its updates, which the thread runs at the start of its next round.
//
// Measured with bench/relay.sh on the project's 2-vCPU host, generator on
// the same host: 3.3-4.9 µs of relay CPU per relayed packet at 200k
// packets/s (2000 calls), 5.4-6.4 µs at 50k, about 90 % of it in the
// kernel's UDP paths (recvmmsg, sendmmsg with loopback delivery, epoll);
// 2000 calls ran without loss at 0.66-0.97 relay cores. The step beyond
// is the in-kernel path (Config.Kernel, kernel_linux.go): once a direction
// has latched, nftables rewrites and forwards its packets without waking
// the relay thread (1-2 µs per packet, relay-limits.md §2c).
//
// # Forwarding and latching
//
// A packet that arrives on side X's RTP (RTCP) port leaves through side Y's
// RTP (RTCP) port, to Y's peer: the address Y's packets come from once
// latched (symmetric RTP, RFC 4961), else Y's SDP address (SetPeer). With
// rtcp-mux (RFC 5761) on both sides RTCP arrives on the RTP port and
// follows the same rule; it is told apart from RTP (by RFC 5761 §4's
// 192-223 rule) only for counting. When only one side muxes (its SetPeer
// gave rtcp = rtp, the other's a separate address), the relay translates
// (RFC 5761 §5.1.3): RTCP that arrives on the muxing side's RTP port
// leaves through the other side's RTCP port to its RTCP peer, and what
// arrives on the other side's RTCP port leaves through the muxing side's
// RTP port. A batch read from one socket then goes out in at most two
// sendmmsg calls, one per destination socket; RTP alone still takes one.
// Where the in-kernel path's key looks for the sender's RTP SSRC (payload
// offset 8), RTCP carries an NTP timestamp or the SSRC of the source it
// reports on, so it stays with the relay thread and is translated there
// even while the kernel forwards the RTP.
// Packets that are neither RTP nor RTCP (STUN, DTLS, ZRTP) are
// forwarded the same way and counted apart: dropping them would break
// DTLS-SRTP key exchange through the relay, and forwarding them is what a
// relay that cannot tell them from media would do anyway. ICE is not
// terminated: an endpoint that insists on ICE with the relay's candidates
// needs more than this package.
//
// Config.Latch decides how a socket learns its peer:
//
//   - LatchFirst: the first packet's source is the peer until SetPeer gives
//     a different SDP address; the socket is connected to it and the kernel
//     drops packets from other sources. A stranger who sends first wins the
//     latch (inherent in latching).
//   - LatchSSRC: as LatchFirst, but a packet from a new source carrying
//     the SSRC already seen moves the latch (an endpoint whose NAT mapping
//     changed); others are dropped.
//   - LatchOff: packets go to the SDP address only; any source is accepted.
//
// Packets that arrive before the other side's address is known are counted
// (Drops.NoPeer) and dropped.
//
// # Forked calls
//
// An INVITE that forks may get early media from several callees at once
// (RFC 3960 §3), each in its own early dialog. Call.Fork gives each branch
// a set of streams of its own, with its own ports on both sides: the
// caller hears each callee from the A port that callee's provisional
// answer advertised, and what it sends to that port reaches that callee
// only. Call.Keep settles the call on the fork whose 2xx came: its streams
// become the call's own (re-INVITEs, stats, the inactivity check) and the
// others' ports and pinholes are freed at once, kernel-forwarded
// directions withdrawn. A call that never forks never creates a fork and
// keeps its ports from the first offer on.
//
// # What a stream tells about each side
//
// Stream.Stats gives, per side, what that side sent to the relay: counts,
// RFC 3550 loss and jitter measured on arrival (no RTCP needed), and what
// it takes to tell why media does not flow: the SDP address it
// advertised, whether and to which source the relay latched, the first
// and last packet, and its drops by reason with the last refused source.
// All of it is plain fields updated under the thread's lock, with no
// allocation or system call added to the data path. Estimate turns loss
// and jitter into a G.107 MOS.
//
// # Ports and file descriptors
//
// Each local address has the whole port range; a stream takes one pair on
// A's address and one on B's, bound when the stream is created and closed
// when its call is closed. A pair that another process holds is skipped.
// Freed pairs are reused last (FIFO).
//
// A stream costs 4 ports and 4 file descriptors when both sides use one
// address, 2 ports of each address when they differ (gateway mode). The
// range 30000-39999 thus holds 2500 streams on one address; 5000 with two.
// On top, each thread has 2 fds (epoll, eventfd). With the fd limit of
// 20000 of the project's host (which cannot be raised) and a few hundred
// fds for SIP, about 4900 streams fit at most, whatever the range. Running
// out of fds is reported as ErrNoPorts.
package media
