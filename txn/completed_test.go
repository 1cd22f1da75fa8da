package txn

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"sipedge/transport"
)

// TestCompletedTable: rows answer lookups until their expiry, give back
// the exact response and destination (IPv4 and IPv6), expire in order,
// and the chunks of expired rows are released or reused without
// corrupting the rows still alive.
func TestCompletedTable(t *testing.T) {
	var c completed
	now := time.Unix(1000, 0)
	c.init(func() time.Time { return now })
	v4 := netip.MustParseAddrPort("192.0.2.7:5060")
	v6 := netip.MustParseAddrPort("[2001:db8::7]:5062")
	c.add(1, v4, transport.UDP, []byte("SIP/2.0 200 OK one"), now.Add(32*time.Second))
	c.add(2, v6, transport.UDP, []byte("SIP/2.0 200 OK two"), now.Add(33*time.Second))
	for _, tc := range []struct {
		key  uint64
		resp string
		to   netip.AddrPort
	}{{1, "SIP/2.0 200 OK one", v4}, {2, "SIP/2.0 200 OK two", v6}} {
		resp, to, proto, ok := c.lookup(tc.key, nil)
		if !ok || string(resp) != tc.resp || to != tc.to || proto != transport.UDP {
			t.Fatalf("lookup %d: %q %v %v %v", tc.key, resp, to, proto, ok)
		}
	}
	if _, _, _, ok := c.lookup(3, nil); ok {
		t.Fatal("an unknown key was found")
	}
	now = now.Add(32*time.Second + time.Millisecond)
	if _, _, _, ok := c.lookup(1, nil); ok {
		t.Fatal("row 1 outlived its Timer J")
	}
	if _, _, _, ok := c.lookup(2, nil); !ok {
		t.Fatal("row 2 expired early")
	}
	// Many rows, 10 ms apart: chunks go as their rows expire.
	big := bytes.Repeat([]byte("x"), 4000)
	for i := uint64(100); i < 2100; i++ {
		now = now.Add(10 * time.Millisecond)
		c.add(i*32, v4, transport.UDP, append([]byte(fmt.Sprint(i)), big...), now.Add(5*time.Second))
	}
	for i := uint64(100); i < 2100; i++ {
		resp, _, _, ok := c.lookup(i*32, nil)
		alive := i >= 1600 // added within the last 5 s
		if ok != alive || ok && !bytes.HasPrefix(resp, []byte(fmt.Sprint(i))) {
			t.Fatalf("row %d: found %v (want %v), %q", i, ok, alive, resp[:min(len(resp), 8)])
		}
	}
	sh := &c.shards[0]
	// 500 live rows of 4 KiB: 2 MiB in 256 KiB chunks, one more partly used.
	if n := len(sh.chunks); n > 9 {
		t.Errorf("%d chunks held for 2 MiB of live responses", n)
	}
	// A response larger than a chunk gets one of its own.
	huge := bytes.Repeat([]byte("h"), chunkSize+1000)
	c.add(5000*32, v4, transport.UDP, huge, now.Add(5*time.Second))
	c.add(5001*32, v4, transport.UDP, []byte("after"), now.Add(5*time.Second))
	if resp, _, _, ok := c.lookup(5000*32, nil); !ok || !bytes.Equal(resp, huge) {
		t.Fatal("oversized response not kept whole")
	}
	if resp, _, _, ok := c.lookup(5001*32, nil); !ok || string(resp) != "after" {
		t.Fatalf("row after the oversized one: %q %v", resp, ok)
	}
	now = now.Add(time.Minute)
	c.sweep()
	if n := c.len(); n != 0 {
		t.Fatalf("%d rows after every expiry", n)
	}
	if len(sh.chunks) != 0 || len(sh.spare) > maxSpare {
		t.Errorf("after every expiry: %d chunks, %d spare", len(sh.chunks), len(sh.spare))
	}
}

// After close the table holds nothing and stores nothing: its chunks are
// given back (mapped ones unmapped), and a late add or lookup is safe.
func TestCompletedClose(t *testing.T) {
	var c completed
	now := time.Unix(1000, 0)
	c.init(func() time.Time { return now })
	v4 := netip.MustParseAddrPort("192.0.2.7:5060")
	body := bytes.Repeat([]byte("y"), 1000)
	for i := uint64(0); i < 3000; i++ {
		c.add(i, v4, transport.UDP, body, now.Add(time.Minute))
	}
	mapped := 0
	for i := range c.shards {
		for _, ch := range c.shards[i].chunks {
			if ch.mapped {
				mapped++
			}
		}
	}
	if mapped == 0 && mapsChunks {
		t.Error("no chunk was mapped outside the heap")
	}
	c.close()
	if n := c.len(); n != 0 {
		t.Fatalf("%d rows after close", n)
	}
	c.add(7, v4, transport.UDP, body, now.Add(time.Minute))
	if _, _, _, ok := c.lookup(7, nil); ok {
		t.Error("a row was stored after close")
	}
	for i := range c.shards {
		if sh := &c.shards[i]; len(sh.chunks) != 0 || len(sh.spare) != 0 {
			t.Fatalf("shard %d keeps %d chunks, %d spare after close", i, len(sh.chunks), len(sh.spare))
		}
	}
}
