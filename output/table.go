// SPDX-License-Identifier: Apache-2.0

package output

import (
	"net/netip"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tcpstate/tcpstate/tracer"
)

// Column widths. With one space between columns a line of IPv4 events
// is 119 characters, so it fits a 120-column terminal.
const (
	widthTime  = 12 // 15:04:05.000
	widthPid   = 7
	widthComm  = 15 // TASK_COMM_LEN - 1
	widthAddr  = 22 // 255.255.255.255:65535 plus one
	widthTrans = 27 // NEW_SYN_RECV -> ESTABLISHED
	widthMS    = 8  // 9999.999
)

// tableFormat writes aligned columns for people. A value wider than its
// column is printed whole (shifting the rest of the line) because a cut
// address or state would be wrong rather than just ugly; only comm is
// truncated, as the kernel does.
type tableFormat struct {
	clock clock
	seq   bool
}

// widthSeq fits a 32-bit sequence number.
const widthSeq = 10

// NewTable returns the table format.
func NewTable() Format { return &tableFormat{clock: clock{layout: "15:04:05", digits: 3}} }

func (f *tableFormat) Header() []byte {
	var h header
	col := h.col
	col("TIME", widthTime, false)
	col("PID", widthPid, true)
	col("COMM", widthComm, false)
	col("LADDR:LPORT", widthAddr, false)
	col("RADDR:RPORT", widthAddr, false)
	col("TRANSITION", widthTrans, false)
	col("MS", widthMS, true)
	if f.seq {
		col("SND_UNA", widthSeq, true)
		col("SND_NXT", widthSeq, true)
		col("RCV_NXT", widthSeq, true)
	}
	return append(h, '\n')
}

func (f *tableFormat) AppendEvent(dst []byte, ev *tracer.Event) []byte {
	start := len(dst)
	dst = f.clock.append(dst, ev.Time)
	dst = padRight(dst, start, widthTime)
	dst = append(dst, ' ')

	dst = appendOwner(dst, ev.Pid, ev.Comm)
	dst = appendEndpoints(dst, widthAddr, ev.LAddr, ev.LPort, ev.RAddr, ev.RPort)

	start = len(dst)
	dst = appendState(dst, ev.OldState)
	dst = append(dst, " -> "...)
	dst = appendState(dst, ev.NewState)
	if ev.Synthesized {
		dst = append(dst, '*') // derived by tcpstate, see --help
	}
	dst = padRight(dst, start, widthTrans)
	dst = append(dst, ' ')

	start = len(dst)
	if ev.InStateKnown {
		dst = appendMillis(dst, ev.InState)
	} else {
		dst = append(dst, '-')
	}
	// The last column is right-aligned and never empty, so the line
	// has no trailing blanks.
	dst = padLeft(dst, start, widthMS)
	if f.seq {
		for _, v := range [...]uint32{ev.SndUna, ev.SndNxt, ev.RcvNxt} {
			dst = append(dst, ' ')
			start = len(dst)
			dst = strconv.AppendUint(dst, uint64(v), 10)
			dst = padLeft(dst, start, widthSeq)
		}
	}
	return append(dst, '\n')
}

// appendEndpoint appends addr:port, with IPv6 in brackets so the port
// stays distinguishable.
// header lays out a table header, a column at a time.
type header []byte

// col appends a column title padded to width, right-aligned if right.
func (h *header) col(name string, width int, right bool) {
	b := *h
	if len(b) > 0 {
		b = append(b, ' ')
	}
	start := len(b)
	b = append(b, name...)
	if right {
		b = padLeft(b, start, width)
	} else {
		b = padRight(b, start, width)
	}
	*h = b
}

// appendOwner appends the PID and COMM columns and a blank.
func appendOwner(dst []byte, pid uint32, comm string) []byte {
	start := len(dst)
	if pid == 0 {
		dst = append(dst, '-') // nobody owns the socket yet
	} else {
		dst = strconv.AppendUint(dst, uint64(pid), 10)
	}
	dst = padLeft(dst, start, widthPid)
	dst = append(dst, ' ')
	dst, n := appendComm(dst, comm)
	dst = appendSpaces(dst, widthComm-n)
	return append(dst, ' ')
}

// appendEndpoints appends the LADDR:LPORT and RADDR:RPORT columns, each
// width wide, and a blank after each.
func appendEndpoints(dst []byte, width int, laddr netip.Addr, lport uint16, raddr netip.Addr, rport uint16) []byte {
	start := len(dst)
	dst = appendEndpoint(dst, laddr, lport)
	dst = padRight(dst, start, width)
	dst = append(dst, ' ')
	start = len(dst)
	dst = appendEndpoint(dst, raddr, rport)
	dst = padRight(dst, start, width)
	return append(dst, ' ')
}

func appendEndpoint(dst []byte, addr netip.Addr, port uint16) []byte {
	switch {
	case !addr.IsValid():
		dst = append(dst, '-')
	case addr.Is6():
		dst = append(dst, '[')
		dst = addr.AppendTo(dst)
		dst = append(dst, ']')
	default:
		dst = addr.AppendTo(dst)
	}
	dst = append(dst, ':')
	return strconv.AppendUint(dst, uint64(port), 10)
}

// appendMillis appends d in milliseconds with three decimals.
func appendMillis(dst []byte, d time.Duration) []byte {
	us := int64(d / time.Microsecond)
	if us < 0 {
		dst = append(dst, '-')
		us = -us
	}
	dst = strconv.AppendInt(dst, us/1000, 10)
	frac := us % 1000
	return append(dst, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

// appendComm appends at most widthComm characters of comm and returns how
// many it wrote. Comm is set by the traced process, so control characters
// and invalid UTF-8 become '?' rather than reaching the terminal.
func appendComm(dst []byte, comm string) ([]byte, int) {
	if comm == "" {
		return append(dst, '-'), 1
	}
	n := 0
	for i := 0; i < len(comm) && n < widthComm; n++ {
		r, size := utf8.DecodeRuneInString(comm[i:])
		if (r == utf8.RuneError && size == 1) || unicode.IsControl(r) {
			dst = append(dst, '?')
		} else {
			dst = append(dst, comm[i:i+size]...)
		}
		i += size
	}
	return dst, n
}

// padRight pads dst[start:] with spaces to width bytes (left-aligns it).
func padRight(dst []byte, start, width int) []byte {
	return appendSpaces(dst, width-(len(dst)-start))
}

// padLeft shifts dst[start:] right to end at width bytes (right-aligns it).
func padLeft(dst []byte, start, width int) []byte {
	n := len(dst) - start
	if n >= width {
		return dst
	}
	pad := width - n
	dst = appendSpaces(dst, pad)
	copy(dst[start+pad:], dst[start:start+n])
	for i := start; i < start+pad; i++ {
		dst[i] = ' '
	}
	return dst
}

func appendSpaces(dst []byte, n int) []byte {
	for ; n > 0; n-- {
		dst = append(dst, ' ')
	}
	return dst
}
