package capture

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// WriteLadder writes msgs as a text ladder diagram, the way sngrep draws
// a call flow: one column per address (sipedge's own marked), one arrow
// per message labelled with its method or status, the time of each
// message (UTC) and the time since the one before, the summary of an SDP
// body under its arrow; then the full text of every message. Bytes other
// than printable text, tab and line ends are written as '.', so the file
// is safe to cat on a terminal.
func WriteLadder(w io.Writer, msgs []Message) error {
	bw := bufio.NewWriter(w)
	cols, index, ours := columns(msgs)
	if len(msgs) == 0 {
		fmt.Fprintln(bw, "no messages")
		return bw.Flush()
	}
	// Column spacing: the widest address, at least 24, at most 48
	// characters; labels longer than the space between two columns are
	// cut.
	spacing := 24
	for _, c := range cols {
		spacing = max(spacing, len(c)+2)
	}
	spacing = min(spacing, 48)
	const prefix = 30 // "  12  10:00:00.123456  +12.345678"
	pos := func(i int) int { return prefix + spacing/2 + i*spacing }
	width := pos(len(cols)-1) + spacing/2
	canvas := make([]byte, width)
	blank := func() {
		for i := range canvas {
			canvas[i] = ' '
		}
		for i := range cols {
			canvas[pos(i)] = '|'
		}
	}
	put := func(at int, s string) {
		for i := 0; i < len(s); i++ {
			if at+i >= len(canvas) {
				canvas = append(canvas, ' ')
			}
			canvas[at+i] = s[i]
		}
	}
	flush := func() {
		fmt.Fprintf(bw, "%s\n", strings.TrimRight(string(canvas), " "))
		canvas = canvas[:width]
	}

	first, last := msgs[0].Time.UTC(), msgs[len(msgs)-1].Time.UTC()
	fmt.Fprintf(bw, "%d messages, %s to %s UTC (%s)\n\n", len(msgs), first.Format("2006-01-02 15:04:05.000000"),
		last.Format("15:04:05.000000"), last.Sub(first).Round(time.Microsecond))
	// Headers: the address centred on its column, "sipedge" under
	// sipedge's own.
	for _, row := range []func(i int) string{
		func(i int) string { return cols[i] },
		func(i int) string {
			if ours[i] {
				return "sipedge"
			}
			return ""
		},
	} {
		for i := range canvas {
			canvas[i] = ' '
		}
		for i := range cols {
			s := row(i)
			if len(s) > spacing-2 {
				s = s[:spacing-2]
			}
			put(max(pos(i)-len(s)/2, 0), s)
		}
		flush()
	}
	blank()
	put(0, "   #  time             delta")
	flush()
	prev := msgs[0].Time
	for n := range msgs {
		m := &msgs[n]
		blank()
		d := m.Time.Sub(prev)
		prev = m.Time
		put(0, fmt.Sprintf("%4d  %s  %+.6f", n+1, m.Time.UTC().Format("15:04:05.000000"), d.Seconds()))
		a, b := pos(index[m.Src()]), pos(index[m.Dst()])
		label := m.Label
		if m.SDP != "" {
			label += " (SDP)"
		}
		switch {
		case a == b: // to itself
			put(a+1, "<-- "+label+" (to itself)")
		default:
			lo, hi := min(a, b), max(a, b)
			for x := lo + 1; x < hi; x++ {
				canvas[x] = '-'
			}
			if b > a {
				canvas[hi-1] = '>'
			} else {
				canvas[lo+1] = '<'
			}
			room := hi - lo - 5
			if len(label) > room {
				label = label[:max(room, 0)]
			}
			if label != "" {
				put(lo+(hi-lo-len(label))/2, " "+label+" ")
			}
		}
		flush()
		if m.SDP != "" {
			blank()
			put(min(a, b)+2, m.SDP)
			flush()
		}
	}
	fmt.Fprintln(bw)
	for n := range msgs {
		m := &msgs[n]
		fmt.Fprintf(bw, "--- %d  %s UTC  %s %s -> %s  %d bytes", n+1, m.Time.UTC().Format("2006-01-02 15:04:05.000000"),
			m.Transport, m.Src(), m.Dst(), m.Size)
		if len(m.Text) < m.Size {
			fmt.Fprintf(bw, " (first %d kept)", len(m.Text))
		}
		fmt.Fprint(bw, "\n")
		text := safeText(m.Text)
		bw.WriteString(text)
		if !strings.HasSuffix(text, "\n") {
			bw.WriteByte('\n')
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// columns lists the addresses of msgs in the order they first appear,
// with each one's index and whether it is sipedge's (a Local address).
func columns(msgs []Message) (cols []string, index map[netip.AddrPort]int, ours []bool) {
	index = map[netip.AddrPort]int{}
	add := func(a netip.AddrPort, local bool) {
		i, ok := index[a]
		if !ok {
			i = len(cols)
			index[a] = i
			cols = append(cols, a.String())
			ours = append(ours, false)
		}
		ours[i] = ours[i] || local
	}
	for i := range msgs {
		m := &msgs[i]
		add(m.Src(), m.Dir != "in")
		add(m.Dst(), m.Dir == "in")
	}
	return cols, index, ours
}

// safeText replaces what a terminal could take as a command with '.':
// control characters other than tab, CR and LF, DEL, the C1 controls
// (U+0080 to U+009F, which xterm obeys), and bytes that are not UTF-8.
func safeText(s string) string {
	unsafe := func(r rune) bool {
		return r < 0x20 && r != '\t' && r != '\r' && r != '\n' || r >= 0x7f && r <= 0x9f || r == utf8.RuneError
	}
	clean := true
	for _, r := range s {
		if unsafe(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if unsafe(r) {
			r = '.'
		}
		b.WriteRune(r)
	}
	return b.String()
}
