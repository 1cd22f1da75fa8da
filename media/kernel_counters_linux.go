//go:build linux

package media

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The exact counters of the directions a removal takes out of the
// kernel are read from the out map's elements one by one (a
// GETSETELEM request naming their keys), not by listing the map: a
// listing costs in proportion to every direction in the kernel, and
// removals come with every call that ends. The nftables package only
// lists, so this request is made here, on a netlink socket of its own.

// nftaSetElemExpressions is NFTA_SET_ELEM_EXPRESSIONS (linux/netfilter/
// nf_tables.h), where an element with more than one expression lists them.
const nftaSetElemExpressions = 11

// countersChunk is the most keys one request names: the kernel answers
// each with a message of its own, all queued on the socket before it is
// read, and drops what does not fit.
const countersChunk = 64

// dialCounters opens the socket the counters are read on, with room for
// a chunk's answers.
func dialCounters() (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, err
	}
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20)
		})
	}
	return c, nil
}

// counters returns the packet and byte counters of the entries' out map
// elements, by key. A key the kernel does not have is missing from the
// result; the error says why.
func (k *kernel) counters(es []*kentry) (map[[12]byte][2]uint64, error) {
	out := make(map[[12]byte][2]uint64, len(es))
	var first error
	for len(es) > 0 {
		n := min(len(es), countersChunk)
		if err := k.countersChunk(es[:n], out); err != nil && first == nil {
			first = err
		}
		es = es[n:]
	}
	return out, first
}

func (k *kernel) countersChunk(es []*kentry, out map[[12]byte][2]uint64) error {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, k.name)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, k.out.Name)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ae *netlink.AttributeEncoder) error {
		for _, e := range es {
			ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
				ae.Nested(unix.NFTA_SET_ELEM_KEY, func(ae *netlink.AttributeEncoder) error {
					ae.Bytes(unix.NFTA_DATA_VALUE, e.out[:])
					return nil
				})
				return nil
			})
		}
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	// nfgenmsg: family, version, resource ID.
	data := append([]byte{unix.AF_INET, unix.NFNETLINK_V0, 0, 0}, attrs...)
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: data,
	}
	sent, err := k.get.Send(req)
	if err != nil {
		return fmt.Errorf("nftables: reading counters: %w", err)
	}
	// One answer per key, then the acknowledgement (or the error that
	// stopped the kernel at a key it does not have).
	for {
		msgs, err := k.get.Receive()
		if err != nil {
			return fmt.Errorf("nftables: reading counters: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Sequence != sent.Header.Sequence {
				continue
			}
			if m.Header.Type == netlink.Error {
				return nil // the acknowledgement: Receive returns errors itself
			}
			if key, c, ok := parseElemCounter(m.Data); ok {
				out[key] = c
			}
		}
	}
}

// parseElemCounter reads the key and the counter of the one element in
// a NEWSETELEM message (the kernel's answer to a GETSETELEM): nfgenmsg,
// then ELEMENTS > LIST_ELEM > KEY > DATA_VALUE beside the counter, in
// ELEM_EXPR or, with several expressions, in EXPRESSIONS > LIST_ELEM.
func parseElemCounter(b []byte) (key [12]byte, c [2]uint64, ok bool) {
	if len(b) < 4 {
		return key, c, false
	}
	elem := attr(attr(b[4:], unix.NFTA_SET_ELEM_LIST_ELEMENTS), unix.NFTA_LIST_ELEM)
	k := attr(attr(elem, unix.NFTA_SET_ELEM_KEY), unix.NFTA_DATA_VALUE)
	if len(k) != len(key) {
		return key, c, false
	}
	copy(key[:], k)
	exprs := [][]byte{attr(elem, unix.NFTA_SET_ELEM_EXPR)}
	if list := attr(elem, nftaSetElemExpressions); list != nil {
		exprs = attrs(list, unix.NFTA_LIST_ELEM)
	}
	for _, x := range exprs {
		if string(bytes.TrimRight(attr(x, unix.NFTA_EXPR_NAME), "\x00")) != "counter" {
			continue
		}
		data := attr(x, unix.NFTA_EXPR_DATA)
		pk, by := attr(data, unix.NFTA_COUNTER_PACKETS), attr(data, unix.NFTA_COUNTER_BYTES)
		if len(pk) != 8 || len(by) != 8 {
			return key, c, false
		}
		return key, [2]uint64{binary.BigEndian.Uint64(pk), binary.BigEndian.Uint64(by)}, true
	}
	return key, c, false
}

// attr is the value of b's first netlink attribute of type typ (flags
// aside), nil if there is none.
func attr(b []byte, typ uint16) []byte {
	if v := attrs(b, typ); len(v) > 0 {
		return v[0]
	}
	return nil
}

// attrs are the values of b's netlink attributes of type typ.
func attrs(b []byte, typ uint16) [][]byte {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil
	}
	var out [][]byte
	for ad.Next() {
		if ad.Type() == typ {
			out = append(out, ad.Bytes())
		}
	}
	return out
}
