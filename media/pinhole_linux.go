//go:build linux

package media

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// NFTables opens firewall pinholes for relayed streams (gateway
// deployment): a set of UDP ports in a table and chain the firewall
// already has, and one rule at the top of that chain accepting UDP to the
// ports in the set. A stream's ports are in the set exactly while the
// stream exists; everything else keeps meeting the firewall's own rules.
//
// It works through netlink (github.com/google/nftables), so opening a
// pinhole costs a message to the kernel, not a process. sipedge needs
// CAP_NET_ADMIN for it.
type NFTables struct {
	mu    sync.Mutex
	conn  *nftables.Conn
	table *nftables.Table
	chain *nftables.Chain
	set   *nftables.Set
	rule  *nftables.Rule
	// refs counts the streams using each port: the set holds port numbers,
	// and the inside and outside addresses have the same numbers.
	refs map[uint16]int
}

// SetName is the name of the port set sipedge adds to the table.
const SetName = "sipedge_media"

// OpenNFTables adds the set and the rule to an existing table and chain,
// given as "FAMILY TABLE CHAIN" (e.g. "inet filter input").
func OpenNFTables(spec string) (*NFTables, error) {
	f := strings.Fields(spec)
	if len(f) != 3 {
		return nil, fmt.Errorf("%q: want \"family table chain\", e.g. \"inet filter input\"", spec)
	}
	var fam nftables.TableFamily
	switch f[0] {
	case "inet":
		fam = nftables.TableFamilyINet
	case "ip":
		fam = nftables.TableFamilyIPv4
	case "ip6":
		fam = nftables.TableFamilyIPv6
	default:
		return nil, fmt.Errorf("%q: family must be inet, ip or ip6", f[0])
	}
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	chains, err := conn.ListChainsOfTableFamily(fam)
	if err != nil {
		return nil, fmt.Errorf("nftables: listing chains (sipedge needs CAP_NET_ADMIN): %w", err)
	}
	var chain *nftables.Chain
	for _, c := range chains {
		if c.Table.Name == f[1] && c.Name == f[2] {
			chain = c
		}
	}
	if chain == nil {
		return nil, fmt.Errorf("nftables: no chain %s in table %s %s", f[2], f[0], f[1])
	}
	n := &NFTables{conn: conn, table: chain.Table, chain: chain, refs: map[uint16]int{}}
	// A set left over by a sipedge that was killed: start afresh.
	if old, err := conn.GetSetByName(n.table, SetName); err == nil && old != nil {
		conn.DelSet(old)
		conn.Flush()
	}
	n.set = &nftables.Set{Table: n.table, Name: SetName, KeyType: nftables.TypeInetService}
	if err := conn.AddSet(n.set, nil); err != nil {
		return nil, fmt.Errorf("nftables: set: %w", err)
	}
	n.rule = conn.InsertRule(&nftables.Rule{
		Table: n.table,
		Chain: chain,
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: n.set.Name, SetID: n.set.ID},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictAccept},
		},
		UserData: []byte("sipedge media pinholes"),
	})
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("nftables: adding the pinhole rule to %s: %w", spec, err)
	}
	return n, nil
}

func portElem(port uint16) nftables.SetElement {
	var k [2]byte
	binary.BigEndian.PutUint16(k[:], port)
	return nftables.SetElement{Key: k[:]}
}

// Open implements Firewall: ports not open yet are added in one batch.
func (n *NFTables) Open(ports []netip.AddrPort) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var add []nftables.SetElement
	for _, p := range ports {
		if n.refs[p.Port()]++; n.refs[p.Port()] == 1 {
			add = append(add, portElem(p.Port()))
		}
	}
	if len(add) == 0 {
		return nil
	}
	err := n.conn.SetAddElements(n.set, add)
	if err == nil {
		err = n.conn.Flush()
	}
	if err != nil {
		for _, p := range ports {
			if n.refs[p.Port()]--; n.refs[p.Port()] <= 0 {
				delete(n.refs, p.Port())
			}
		}
	}
	return err
}

// Close implements Firewall: ports no other stream uses are removed.
func (n *NFTables) Close(ports []netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var del []nftables.SetElement
	for _, p := range ports {
		if _, ok := n.refs[p.Port()]; !ok {
			continue
		}
		if n.refs[p.Port()]--; n.refs[p.Port()] == 0 {
			delete(n.refs, p.Port())
			del = append(del, portElem(p.Port()))
		}
	}
	if len(del) > 0 && n.conn.SetDeleteElements(n.set, del) == nil {
		n.conn.Flush()
	}
}

// Remove takes the rule and the set out of the firewall (at shutdown).
func (n *NFTables) Remove() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	rules, err := n.conn.GetRules(n.table, n.chain)
	if err == nil {
		for _, r := range rules {
			if string(r.UserData) == "sipedge media pinholes" {
				n.conn.DelRule(r)
			}
		}
	}
	n.conn.DelSet(n.set)
	return n.conn.Flush()
}
