// SPDX-License-Identifier: Apache-2.0

package ladder

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tcpstate/tcpstate/tcp"
)

// This file holds the words every renderer draws, so that text, mermaid
// and svg say the same things.

// Render options shared by the formats.
type Render struct {
	// Relative numbers seq and ack from each side's ISN, as tcpdump does
	// without -S (the SYN is 0); absolute otherwise.
	Relative bool
	// ASCII draws with plain characters (text only).
	ASCII bool
	// Follow draws rows one by one, each prefixed with #Num (text only).
	Follow bool
}

// Footer says what a diagram is.
const Footer = "Inferred from state transitions and sequence numbers, not captured packets: " +
	"retransmissions and window updates are not drawn."

// arrowLabel is "SYN+ACK seq=N ack=M".
func (r Render) arrowLabel(d *Diagram, row *Row) string {
	var b strings.Builder
	b.WriteString(row.Seg.String())
	b.WriteString(" seq=")
	b.WriteString(strconv.FormatUint(uint64(r.number(d, row.From, row.Seq, row.Seg == RST && row.Seq == 0 && row.HasAck)), 10))
	if row.HasAck {
		b.WriteString(" ack=")
		b.WriteString(strconv.FormatUint(uint64(r.number(d, row.From.other(), row.Ack, false)), 10))
	}
	return b.String()
}

// number is n relative to the ISN of side s when asked and known; a
// refused connect's RST (seq 0, not from any ISN) stays absolute.
func (r Render) number(d *Diagram, s Side, n uint32, absolute bool) uint32 {
	if !r.Relative || absolute || !d.Ends[s].ISNKnown {
		return n
	}
	return n - d.Ends[s].ISN
}

// dataLabel is "5 bytes".
func dataLabel(row *Row) string {
	if row.Bytes == 1 {
		return "1 byte"
	}
	return strconv.FormatUint(row.Bytes, 10) + " bytes"
}

// stateLabel is the state entered, in brackets when inferred.
func stateLabel(c Change) string {
	if c.State == 0 {
		return ""
	}
	s := stateName(c.State)
	if c.Inferred {
		return "[" + s + "]"
	}
	return s
}

// inPrevLabel is the time spent in the previous state, "" when unknown.
func inPrevLabel(c Change) string {
	if c.State == 0 || !c.InPrevKnown {
		return ""
	}
	return fmtDuration(c.InPrev)
}

func stateName(s tcp.State) string {
	if s == 0 {
		return "?"
	}
	return s.String()
}

// msSince is t - start in milliseconds with 3 decimals.
func msSince(t, start time.Time) string {
	return strconv.FormatFloat(float64(since(t, start))/float64(time.Millisecond), 'f', 3, 64)
}

// fmtDuration is a duration in ms with 3 decimals below 10 s, else in s.
func fmtDuration(d time.Duration) string {
	if d < 10*time.Second && d > -10*time.Second {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
}

// endpointLabel is "127.0.0.1:80" and a second line "pid 42 nginx",
// "no owner", or "(inferred)".
func endpointLabel(e *Endpoint) (addr, owner string) {
	addr = e.Addr.String()
	if e.Addr.Addr().Is4In6() {
		addr = netAddrPort(e)
	}
	switch {
	case e.Inferred:
		owner = "peer, not on this host: states inferred"
	case e.Pid == 0:
		owner = "no owner seen"
	default:
		owner = fmt.Sprintf("pid %d %s", e.Pid, safeComm(e.Comm))
	}
	return addr, owner
}

func netAddrPort(e *Endpoint) string {
	return e.Addr.Addr().Unmap().String() + ":" + strconv.Itoa(int(e.Addr.Port()))
}

// title is the first line of a diagram.
func title(d *Diagram) string {
	l, _ := endpointLabel(&d.Ends[Left])
	r, _ := endpointLabel(&d.Ends[Right])
	where := "peer elsewhere"
	if !d.Ends[Right].Inferred {
		where = "both ends on this host"
	}
	fam := "IPv4"
	if d.Family == tcp.IPv6 {
		fam = "IPv6"
	}
	s := fmt.Sprintf("TCP %s ↔ %s (%s, %s)", l, r, fam, where)
	switch {
	case d.TimeWait:
		s += ", TIME_WAIT still running when drawn"
	case d.Open:
		s += ", still open when drawn"
	}
	return s
}

// noteLabel is a row's note, marked when it is a problem.
func (r Render) noteLabel(row *Row) string {
	if row.Note == "" {
		return ""
	}
	if row.Warn {
		if r.ASCII {
			return "(!) " + row.Note
		}
		return "⚠ " + row.Note
	}
	return row.Note
}

// safeComm keeps a process name from reaching a terminal, a diagram or
// an XML file as anything but plain text: control characters, invalid
// UTF-8 and markup characters become '?'.
func safeComm(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i >= 64 {
			break
		}
		if r == utf8.RuneError || !unicode.IsPrint(r) || strings.ContainsRune("<>&\"';#`\\", r) {
			r = '?'
		}
		b.WriteRune(r)
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}
