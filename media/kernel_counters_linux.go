//go:build linux

package media

import (
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

// counters returns the packet and byte counters of the out map's
// elements with these keys, by key. A key the kernel does not have is
// missing from the result; the error says why.
func (k *kernel) counters(keys [][]byte) (map[string][2]uint64, error) {
	out := make(map[string][2]uint64, len(keys))
	var first error
	for len(keys) > 0 {
		n := min(len(keys), countersChunk)
		if err := k.countersChunk(keys[:n], out); err != nil && first == nil {
			first = err
		}
		keys = keys[n:]
	}
	return out, first
}

func (k *kernel) countersChunk(keys [][]byte, out map[string][2]uint64) error {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, k.name)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, k.out.Name)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ae *netlink.AttributeEncoder) error {
		for _, key := range keys {
			ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
				ae.Nested(unix.NFTA_SET_ELEM_KEY, func(ae *netlink.AttributeEncoder) error {
					ae.Bytes(unix.NFTA_DATA_VALUE, key)
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
				out[string(key)] = c
			}
		}
	}
}

// parseElemCounter reads the key and the counter of the one element in
// a NEWSETELEM message (the kernel's answer to a GETSETELEM).
func parseElemCounter(b []byte) (key []byte, c [2]uint64, ok bool) {
	if len(b) < 4 {
		return nil, c, false
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return nil, c, false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(ad *netlink.AttributeDecoder) error {
			for ad.Next() {
				if ad.Type() != unix.NFTA_LIST_ELEM {
					continue
				}
				ad.Nested(func(ad *netlink.AttributeDecoder) error {
					for ad.Next() {
						switch ad.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							ad.Nested(func(ad *netlink.AttributeDecoder) error {
								for ad.Next() {
									if ad.Type() == unix.NFTA_DATA_VALUE {
										key = ad.Bytes()
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_EXPR:
							ad.Nested(func(ad *netlink.AttributeDecoder) error {
								if cc, found := exprCounter(ad); found {
									c, ok = cc, true
								}
								return nil
							})
						case nftaSetElemExpressions:
							ad.Nested(func(ad *netlink.AttributeDecoder) error {
								for ad.Next() {
									if ad.Type() == unix.NFTA_LIST_ELEM {
										ad.Nested(func(ad *netlink.AttributeDecoder) error {
											if cc, found := exprCounter(ad); found {
												c, ok = cc, true
											}
											return nil
										})
									}
								}
								return nil
							})
						}
					}
					return nil
				})
			}
			return nil
		})
	}
	if ad.Err() != nil || key == nil {
		return nil, c, false
	}
	return key, c, ok
}

// exprCounter reads a counter expression's packets and bytes.
func exprCounter(ad *netlink.AttributeDecoder) (c [2]uint64, ok bool) {
	counter := false
	var pk, by uint64
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_EXPR_NAME:
			counter = ad.String() == "counter"
		case unix.NFTA_EXPR_DATA:
			ad.Nested(func(ad *netlink.AttributeDecoder) error {
				for ad.Next() {
					switch ad.Type() {
					case unix.NFTA_COUNTER_PACKETS:
						pk = ad.Uint64()
					case unix.NFTA_COUNTER_BYTES:
						by = ad.Uint64()
					}
				}
				return nil
			})
		}
	}
	if !counter {
		return c, false
	}
	return [2]uint64{pk, by}, true
}
