package txn

import (
	"fmt"
	"testing"
	"time"

	"sipedge/transport"
)

// TestMaxServers: past MaxServers live server transactions a new request is
// refused (nil, true) and counted, while a retransmission, the ACK of a
// non-2xx and a CANCEL still match; once a transaction ends there is room
// again.
func TestMaxServers(t *testing.T) {
	rec := &recorder{}
	l := New(Config{T1: testT1, T2: testT2, T4: testT4, Sender: rec, Tick: 2 * time.Millisecond, MaxServers: 2})
	t.Cleanup(l.Close)
	inv, iv := parse(t, request("INVITE", "z9hG4bKcap1"))
	st1, created := l.ServerFor(inv, iv, transport.TCP, dst)
	if st1 == nil || !created {
		t.Fatal("first INVITE refused")
	}
	opt, ov := parse(t, request("OPTIONS", "z9hG4bKcap2"))
	st2, created := l.ServerFor(opt, ov, transport.TCP, dst)
	if st2 == nil || !created {
		t.Fatal("second request refused")
	}
	for i, method := range []string{"INVITE", "REGISTER", "OPTIONS"} {
		m, v := parse(t, request(method, fmt.Sprintf("z9hG4bKover%d", i)))
		if st, created := l.ServerFor(m, v, transport.UDP, dst); st != nil || !created {
			t.Fatalf("%s over the cap: (%v, %v), want (nil, true)", method, st, created)
		}
	}
	if s := l.Stats(); s.ServersRefused != 3 || s.Servers != 2 {
		t.Fatalf("stats %+v", s)
	}
	// A retransmission of a live transaction still matches it.
	if st, created := l.ServerFor(inv, iv, transport.TCP, dst); st != st1 || created {
		t.Fatal("retransmission not matched over the cap")
	}
	// A CANCEL is its own transaction, even over the cap.
	c, cv := parse(t, request("CANCEL", "z9hG4bKcap1"))
	if l.FindInvite(c, cv) != st1 {
		t.Fatal("CANCEL does not find its INVITE")
	}
	cst, created := l.ServerFor(c, cv, transport.TCP, dst)
	if cst == nil || !created {
		t.Fatal("CANCEL refused over the cap")
	}
	cst.Respond([]byte("SIP/2.0 200 OK\r\n"), 200) // ends at once over TCP
	// The ACK of the INVITE's non-2xx is absorbed by it.
	st1.Respond([]byte("SIP/2.0 487 Request Terminated\r\n"), 487)
	ack, av := parse(t, request("ACK", "z9hG4bKcap1"))
	if st, created := l.ServerFor(ack, av, transport.TCP, dst); st != st1 || created {
		t.Fatal("ACK not absorbed over the cap")
	}
	if s := l.Stats(); s.ServersRefused != 3 {
		t.Fatalf("refused %d, want 3", s.ServersRefused)
	}
	// The INVITE ended (the ACK, Timer I 0 over TCP): room for one more.
	eventually(t, "INVITE terminated", time.Second, func() bool { s, _ := l.Counts(); return s == 1 })
	m, v := parse(t, request("INVITE", "z9hG4bKafter"))
	if st, created := l.ServerFor(m, v, transport.UDP, dst); st == nil || !created {
		t.Fatal("refused with room under the cap")
	}
	m, v = parse(t, request("INVITE", "z9hG4bKafter2"))
	if st, _ := l.ServerFor(m, v, transport.UDP, dst); st != nil {
		t.Fatal("cap not enforced again")
	}
}

// TestMaxServersDefault: zero means DefaultMaxServers, negative no cap.
func TestMaxServersDefault(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, DefaultMaxServers}, {5, 5}, {-1, -1}} {
		l := New(Config{MaxServers: tc.in, Sender: &recorder{}})
		if l.cfg.MaxServers != tc.want {
			t.Errorf("MaxServers %d: %d, want %d", tc.in, l.cfg.MaxServers, tc.want)
		}
		if tc.want < 0 && l.full() {
			t.Error("no cap, yet full")
		}
		l.Close()
	}
}
