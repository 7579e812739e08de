// SPDX-License-Identifier: Apache-2.0

package output

// This file lays out the tables: their column widths, headers and padding.

// Column widths of the event table. With one space between columns a
// line of IPv4 events is 119 characters, so it fits a 120-column terminal.
const (
	widthTime  = 12 // 15:04:05.000
	widthPid   = 7
	widthComm  = 15 // TASK_COMM_LEN - 1
	widthAddr  = 22 // 255.255.255.255:65535 plus one
	widthTrans = 27 // NEW_SYN_RECV -> ESTABLISHED
	widthMS    = 8  // 9999.999
)

// widthSeq fits a 32-bit sequence number.
const widthSeq = 10

// Column widths of the life table's own columns; the others are the
// event table's.
const (
	widthBytes = 9
	widthDur   = 10
)

// Column widths of the socket tables (independent of the event table's).
const (
	widthClock = 12 // 15:04:05.000
	widthEnd   = 22 // 255.255.255.255:65535 plus one
	widthName  = 15 // comm
	widthState = 12 // NEW_SYN_RECV
	widthCount = 7
	widthAge   = 9 // >=59m59s
	widthQueue = 6
	widthOwner = 24
	widthTimer = 18 // keepalive,59.9s,10
	widthGroup = 22 // 255.255.255.255:65535 plus one; a wider IPv6 group is printed whole
	widthPod   = 40 // namespace/pod; a longer one is printed whole
	// widthStuckPod is the pod column of stuck, narrower: its lines
	// are long already.
	widthStuckPod = 30
)

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
