package guard

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestSharedBans: a ban made here and a lift are reported to the observer
// (expiry is not); a ban imposed from another instance drops the source
// like one made here, is not reported back, writes no fail2ban line, and
// ends when the other instance said; a shared lift is not reported.
func TestSharedBans(t *testing.T) {
	f := newFixture(t, rateConfig(10))
	var got []Change
	f.g.OnChange(func(c Change) { got = append(got, c) })
	f.send(srcA, 11)
	if len(got) != 1 || got[0].Lift || got[0].Source != netip.PrefixFrom(srcA, 32) || got[0].Reason != "rate" ||
		time.Until(got[0].Until) < 4*time.Minute {
		t.Fatalf("ban reported as %+v", got)
	}
	f.g.Lift(netip.MustParsePrefix("203.0.113.0/24"))
	if len(got) != 2 || !got[1].Lift || got[1].Source != netip.MustParsePrefix("203.0.113.0/24") {
		t.Fatalf("lift reported as %+v", got)
	}

	f.g.Impose(srcB, "auth-failures", time.Now().Add(time.Minute))
	if f.send(srcB, 1) != 1 || !f.g.Banned(srcB) {
		t.Fatal("an imposed ban does not drop")
	}
	if len(got) != 2 {
		t.Fatalf("an imposed ban was reported back: %+v", got[2:])
	}
	if strings.Contains(f.log.String(), "ban "+srcB.String()+" reason=") {
		t.Fatal("an imposed ban wrote the fail2ban line")
	}
	if !strings.Contains(f.log.String(), "ban "+srcB.String()+" shared by another instance reason=auth-failures") {
		t.Fatalf("no log line for the imposed ban:\n%s", f.log)
	}
	if bans := f.g.Bans(); len(bans) != 1 || bans[0].Source != srcB || bans[0].Reason != "auth-failures" {
		t.Fatalf("bans %+v", bans)
	}
	f.advance(61 * time.Second)
	if f.send(srcB, 1) != 0 {
		t.Fatal("the imposed ban outlived its end")
	}
	f.g.Impose(srcC, "rate", time.Now().Add(time.Minute))
	if f.g.LiftShared(netip.PrefixFrom(srcC, 128)) != 1 || f.g.Banned(srcC) || len(got) != 2 {
		t.Fatalf("shared lift: banned %v, reported %+v", f.g.Banned(srcC), got)
	}
	if s := f.g.Stats(); s.ActiveBans != 0 || s.Bans["shared"] != 2 {
		t.Fatalf("stats %+v", s)
	}
}
