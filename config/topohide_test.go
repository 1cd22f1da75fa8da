package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestTopologyHiding(t *testing.T) {
	c, err := Parse(nil)
	if err != nil || c.TopologyHiding.On() {
		t.Fatalf("default: %v, on %v; want off", err, c.TopologyHiding.On())
	}
	// Each option is a pointer of its own: turning one off leaves the
	// others (and symmetric_responses) on.
	c, err = Parse([]byte("routes:\n  - name: carrier\n    to: sip:203.0.113.10:5060\ntopology_hiding:\n  peers: [carrier, 198.51.100.0/24, 192.0.2.7]\n  via: false\n"))
	if err != nil {
		t.Fatal(err)
	}
	th := c.TopologyHiding
	if *th.Via || !*th.Contact || !*th.RecordRoute || !*th.CallID || !*c.SymmetricResponses {
		t.Errorf("via: false turned off more: %v %v %v %v %v", *th.Via, *th.Contact, *th.RecordRoute, *th.CallID, *c.SymmetricResponses)
	}
	nets, err := c.PeerNetworks()
	want := []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32"), netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("192.0.2.7/32")}
	if err != nil || !slices.Equal(nets, want) {
		t.Errorf("PeerNetworks = %v, %v; want %v", nets, err, want)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"topology_hiding:\n  peers: [nowhere]\n", "config:1: topology_hiding.peers: \"nowhere\": neither a prefix"},
		{"routes:\n  - name: gw\n    to: sip:gw.example.net\ntopology_hiding:\n  peers: [gw]\n", "config:4: topology_hiding.peers: \"gw\": route \"gw\" goes to a host name"},
		{"routes:\n  - name: gw\n    to: sip:203.0.113.10\n    stateless: true\ntopology_hiding:\n  peers: [gw]\n", "config:5: topology_hiding.peers: routes[0] (\"gw\") is stateless and leads to peer network 203.0.113.10/32"},
		{"routes:\n  - name: gw\n    to: sip:203.0.113.10\n    stateless: true\ntopology_hiding:\n  peers: [203.0.113.0/24]\n", "config:5: topology_hiding.peers: routes[0] (\"gw\") is stateless and leads to peer network"},
		{"routes:\n  - name: gw\n    to: sip:trunk.example.net\n    stateless: true\ntopology_hiding:\n  peers: [203.0.113.0/24]\n", "config:5: topology_hiding.peers: routes[0] (\"gw\") is stateless and goes to a host name"},
		{"topology_hiding:\n  peers: [203.0.113.0/24]\n  via: sometimes\n", "config:3: topology_hiding.via: \"sometimes\": want true or false"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant prefix %q", tc.yaml, err, tc.want)
		}
	}
	// A stateless route elsewhere is fine.
	if _, err := Parse([]byte("routes:\n  - name: gw\n    to: sip:192.0.2.1\n    stateless: true\ntopology_hiding:\n  peers: [203.0.113.0/24]\n")); err != nil {
		t.Error(err)
	}
}
