// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/tcpstate/tcpstate/tcp"
)

// This file prints the summary of 'tcpstate ls' (see summary.go).

// WriteSummary writes the summary as "table" or "json" (one object per
// row).
func WriteSummary(w io.Writer, format string, sm *Summary) error {
	bw := bufio.NewWriter(w)
	var b []byte
	rows := sm.Rows()
	switch format {
	case "json":
		for i := range rows {
			b = appendSummaryJSON(b[:0], sm.by, &rows[i])
			bw.Write(b)
		}
	case "table":
		b = appendSummaryHeader(b, sm.by)
		bw.Write(b)
		for i := range rows {
			b = appendSummaryLine(b[:0], sm.by, &rows[i])
			bw.Write(b)
		}
		b = b[:0]
		start := len(b)
		b = append(b, "total"...)
		b = padRight(b, start, widthState)
		b = append(b, ' ')
		if sm.by != ByState {
			b = appendSpaces(b, groupWidth(sm.by)+1)
		}
		start = len(b)
		b = strconv.AppendInt(b, int64(sm.total), 10)
		b = padLeft(b, start, widthCount)
		b = append(b, "  in "...)
		b = strconv.AppendInt(b, int64(sm.Namespaces()), 10)
		b = append(b, " network namespace"...)
		if sm.Namespaces() != 1 {
			b = append(b, 's')
		}
		b = append(b, '\n')
		bw.Write(b)
	default:
		return fmt.Errorf("unknown output format %q (want table or json)", format)
	}
	return bw.Flush()
}

func groupWidth(by GroupBy) int {
	switch by {
	case ByProcess:
		return widthName + 8 // pid/comm
	case ByPod:
		return widthPod
	}
	return widthGroup
}

func appendSummaryHeader(b []byte, by GroupBy) []byte {
	start := len(b)
	b = append(b, "STATE"...)
	b = padRight(b, start, widthState)
	b = append(b, ' ')
	if by != ByState {
		start = len(b)
		b = append(b, [...]string{"", "PID/COMM", "RADDR", "LADDR:LPORT", "NAMESPACE/POD"}[by]...)
		b = padRight(b, start, groupWidth(by))
		b = append(b, ' ')
	}
	start = len(b)
	b = append(b, "COUNT"...)
	b = padLeft(b, start, widthCount)
	b = append(b, "  OLDEST\n"...)
	return b
}

func appendSummaryLine(b []byte, by GroupBy, r *SummaryRow) []byte {
	start := len(b)
	b = appendState(b, r.State)
	b = padRight(b, start, widthState)
	b = append(b, ' ')
	if by != ByState {
		start = len(b)
		switch by {
		case ByProcess:
			b = appendOwnerName(b, r.Pid, r.Comm)
		case ByRemote:
			b = appendAddr(b, r.Addr)
		case ByLocal:
			b = appendEndpoint(b, r.Addr, r.Port)
		case ByPod:
			if name := podName(r.Identity); name != "" {
				b = appendPrintable(b, name)
			} else {
				b = append(b, '-')
			}
		}
		b = padRight(b, start, groupWidth(by))
		b = append(b, ' ')
	}
	start = len(b)
	b = strconv.AppendInt(b, int64(r.Count), 10)
	b = padLeft(b, start, widthCount)
	b = append(b, "  "...)
	if r.OldestKnown {
		b = append(b, ">="...)
		b = AppendAge(b, r.Oldest)
	} else {
		b = append(b, '-')
	}
	if r.State == tcp.Listen {
		b = append(b, "  accept queue "...)
		b = strconv.AppendUint(b, r.AcceptQueue, 10)
		b = append(b, " of backlog "...)
		b = strconv.AppendUint(b, r.Backlog, 10)
		if r.DropsKnown {
			b = append(b, ", "...)
			b = strconv.AppendUint(b, r.ListenDrops, 10)
			b = append(b, " dropped"...)
		}
		if r.Full > 0 {
			b = append(b, ", FULL"...)
			if r.Count > 1 {
				b = append(b, " ("...)
				b = strconv.AppendInt(b, int64(r.Full), 10)
				b = append(b, ')')
			}
		}
	}
	return append(b, '\n')
}

func appendSummaryJSON(b []byte, by GroupBy, r *SummaryRow) []byte {
	b = append(b, `{"state":"`...)
	b = appendState(b, r.State)
	b = append(b, '"')
	switch by {
	case ByProcess:
		b = append(b, ',')
		b = appendOwnerJSON(b, r.Pid, r.Comm)
		b = appendIdentityJSON(b, r.Identity)
	case ByPod:
		b = appendIdentityJSON(b, r.Identity)
	case ByRemote:
		b = append(b, `,"raddr":"`...)
		b = appendAddrJSON(b, r.Addr)
		b = append(b, '"')
	case ByLocal:
		b = append(b, `,"laddr":"`...)
		b = appendAddrJSON(b, r.Addr)
		b = append(b, `","lport":`...)
		b = strconv.AppendUint(b, uint64(r.Port), 10)
	}
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(r.Count), 10)
	if r.OldestKnown {
		b = append(b, `,"oldest_age_us":`...)
		b = strconv.AppendInt(b, int64(r.Oldest/time.Microsecond), 10)
	}
	if r.State == tcp.Listen {
		b = append(b, `,"accept_queue":`...)
		b = strconv.AppendUint(b, r.AcceptQueue, 10)
		b = append(b, `,"backlog":`...)
		b = strconv.AppendUint(b, r.Backlog, 10)
		if r.DropsKnown {
			b = append(b, `,"listen_drops":`...)
			b = strconv.AppendUint(b, r.ListenDrops, 10)
		}
		b = append(b, `,"full":`...)
		b = strconv.AppendInt(b, int64(r.Full), 10)
	}
	return append(b, "}\n"...)
}
