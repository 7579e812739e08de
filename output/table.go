// SPDX-License-Identifier: Apache-2.0

package output

import (
	"strconv"

	"github.com/tcpstate/tcpstate/tracer"
)

// tableFormat writes aligned columns for people. A value wider than its
// column is printed whole (shifting the rest of the line) because a cut
// address or state would be wrong rather than just ugly; only comm is
// truncated, as the kernel does.
type tableFormat struct {
	clock clock
	seq   bool
}

func newTable(o Options) *tableFormat {
	return &tableFormat{clock: clock{layout: "15:04:05", digits: 3}, seq: o.Seq}
}

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

func (f *tableFormat) Append(dst []byte, ev *tracer.Event) []byte {
	start := len(dst)
	dst = f.clock.append(dst, ev.Time)
	dst = padRight(dst, start, widthTime)
	dst = append(dst, ' ')

	dst = appendOwner(dst, ev.Pid, ev.Comm)
	dst = appendEndpoints(dst, widthAddr, ev.LAddr, ev.LPort, ev.RAddr, ev.RPort)

	start = len(dst)
	switch ev.Note {
	case tracer.NoteLateReset:
		dst = append(dst, "RST after CLOSE"...)
	case tracer.NoteNoSocket:
		dst = append(dst, "RST to no socket"...)
	default:
		dst = appendState(dst, ev.OldState)
		dst = append(dst, " -> "...)
		dst = appendState(dst, ev.NewState)
	}
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
	return appendWhy(append(dst, ' '), ev)
}

// appendWhy appends, after a blank, why a connection ended or failed, in
// words, and the line's end: "RST sent: closed with unread data",
// "ECONNREFUSED", "ETIMEDOUT after 6 retransmissions". Nothing (and no
// blank) when there is nothing to say.
func appendWhy(dst []byte, ev *tracer.Event) []byte {
	start := len(dst)
	dst = appendEndWords(dst, "RST", ev.Reset, ev.ResetReason, ev.Error)
	if ev.Error != 0 {
		if ev.Retrans > 0 {
			dst = append(dst, " after "...)
			dst = strconv.AppendUint(dst, uint64(ev.Retrans), 10)
			dst = append(dst, " retransmission"...)
			if ev.Retrans > 1 {
				dst = append(dst, 's')
			}
		}
	}
	if ev.Suppressed > 0 {
		dst = append(dst, " (and "...)
		dst = strconv.AppendUint(dst, uint64(ev.Suppressed), 10)
		dst = append(dst, " more before, not shown)"...)
	}
	if len(dst) == start {
		dst = dst[:start-1] // no trailing blank
	}
	return append(dst, '\n')
}
