// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/tcpstate/tcpstate/container"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
)

// StuckRow is one line of 'tcpstate stuck'.
type StuckRow struct {
	Time time.Time // when the socket was seen stuck (or left its state)
	// Event is "stuck" or "left" with --watch, "" otherwise.
	Event string
	Sock  *snapshot.Socket
	// Age is how long the socket has been in its state (for "left": had
	// been). AgeEstimated marks a lower bound (see snapshot.Socket.Age)
	// rather than the time since the transition was seen.
	Age          time.Duration
	AgeEstimated bool
	// Why overrides the explanation (used for "left").
	Why string
	// Identity is the container and pod of the socket's holders (of
	// the first holder in one); nil outside containers.
	Identity *container.Identity
}

// StuckWriter writes stuck rows as "table" or "json".
type StuckWriter struct {
	w     *bufio.Writer
	json  bool
	watch bool
	buf   []byte
	begun bool
}

// NewStuckWriter returns a writer of format ("table" or "json"); watch
// adds the TIME and EVENT columns of --watch to the table.
func NewStuckWriter(w io.Writer, format string, watch bool) (*StuckWriter, error) {
	if format != "table" && format != "json" {
		return nil, fmt.Errorf("unknown output format %q (want table or json)", format)
	}
	return &StuckWriter{w: bufio.NewWriterSize(w, 64<<10), json: format == "json", watch: watch}, nil
}

// Begin writes the table header, once.
func (sw *StuckWriter) Begin() error {
	if sw.begun {
		return nil
	}
	sw.begun = true
	if sw.json {
		return nil
	}
	_, err := sw.w.Write(appendStuckHeader(nil, sw.watch))
	return err
}

// Write writes one row.
func (sw *StuckWriter) Write(r *StuckRow) error {
	if err := sw.Begin(); err != nil {
		return err
	}
	if sw.json {
		sw.buf = AppendStuckJSON(sw.buf[:0], r)
	} else {
		sw.buf = appendStuckLine(sw.buf[:0], r, sw.watch)
	}
	_, err := sw.w.Write(sw.buf)
	return err
}

// Flush writes out what is buffered.
func (sw *StuckWriter) Flush() error { return sw.w.Flush() }

func appendStuckHeader(b []byte, watch bool) []byte {
	h := header(b)
	col := h.col
	if watch {
		col("TIME", widthClock, false)
		col("EVENT", 5, false)
	}
	col("STATE", widthState, false)
	col("AGE", widthAge, true)
	col("LADDR:LPORT", widthEnd, false)
	col("RADDR:RPORT", widthEnd, false)
	col("RECV-Q", widthQueue, true)
	col("SEND-Q", widthQueue, true)
	col("PID/COMM:FD", widthOwner, false)
	col("NAMESPACE/POD", widthStuckPod, false)
	col("TIMER", widthTimer, false)
	return append(h, " WHY\n"...)
}

func appendStuckLine(b []byte, r *StuckRow, watch bool) []byte {
	s := r.Sock
	if watch {
		start := len(b)
		b = r.Time.AppendFormat(b, "15:04:05.000")
		b = padRight(b, start, widthClock)
		b = append(b, ' ')
		start = len(b)
		b = append(b, r.Event...)
		b = padRight(b, start, 5)
		b = append(b, ' ')
	}
	start := len(b)
	b = appendState(b, s.State)
	b = padRight(b, start, widthState)
	b = append(b, ' ')

	start = len(b)
	if r.AgeEstimated {
		b = append(b, ">="...)
	}
	b = AppendAge(b, r.Age)
	b = padLeft(b, start, widthAge)
	b = append(b, ' ')

	b = appendEndpoints(b, widthEnd, s.LAddr, s.LPort, s.RAddr, s.RPort)

	start = len(b)
	b = strconv.AppendUint(b, uint64(s.RecvQ), 10)
	b = padLeft(b, start, widthQueue)
	b = append(b, ' ')
	start = len(b)
	b = strconv.AppendUint(b, uint64(s.SendQ), 10)
	b = padLeft(b, start, widthQueue)
	b = append(b, ' ')

	start = len(b)
	if len(s.Owners) == 0 {
		b = append(b, '-')
	}
	for i, o := range s.Owners {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendOwnerName(b, o.Pid, o.Comm)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(o.FD), 10)
	}
	b = padRight(b, start, widthOwner)
	b = append(b, ' ')

	start = len(b)
	if name := podName(r.Identity); name != "" {
		b = appendPrintable(b, name)
	} else {
		b = append(b, '-')
	}
	b = padRight(b, start, widthStuckPod)
	b = append(b, ' ')

	start = len(b)
	b = appendTimer(b, s)
	b = padRight(b, start, widthTimer)
	b = append(b, ' ')
	if r.Why != "" {
		b = append(b, r.Why...)
	} else {
		b = append(b, Why(s)...)
	}
	return append(b, '\n')
}

// appendTimer appends the timer as ss prints it, without the brackets:
// name,expires,count; "-" when none is pending.
func appendTimer(b []byte, s *snapshot.Socket) []byte {
	if s.Timer == snapshot.TimerOff {
		return append(b, '-')
	}
	b = append(b, s.Timer.String()...)
	b = append(b, ',')
	b = AppendAge(b, s.Expires)
	b = append(b, ',')
	return strconv.AppendUint(b, uint64(s.Retrans), 10)
}

// stuckTimeJSON is RFC 3339 with nanoseconds, as in the events' JSON.
const stuckTimeJSON = "2006-01-02T15:04:05.000000000Z07:00"

// AppendStuckJSON appends one row as a JSON object and a newline. Keys,
// in this order: time, state, age_us, age_estimated, age_max_us (an upper
// bound of an estimated age, when the kernel gives one), family, laddr,
// lport, raddr, rport, owners, recv_q, send_q, timer, expires_us (when a
// timer is pending), retrans, retransmits, probes, backoff (when the
// kernel gave tcp_info), why, netns, container_id, pod_uid, namespace, pod,
// container (those known, in a container), and event (with --watch).
func AppendStuckJSON(b []byte, r *StuckRow) []byte {
	s := r.Sock
	b = append(b, `{"time":"`...)
	b = r.Time.AppendFormat(b, stuckTimeJSON)
	b = append(b, `","state":"`...)
	b = appendState(b, s.State)
	b = append(b, `","age_us":`...)
	b = strconv.AppendInt(b, int64(r.Age/time.Microsecond), 10)
	b = append(b, `,"age_estimated":`...)
	b = strconv.AppendBool(b, r.AgeEstimated)
	if r.AgeEstimated && s.AgeMaxKnown && r.Event == "" {
		b = append(b, `,"age_max_us":`...)
		b = strconv.AppendInt(b, int64(s.AgeMax/time.Microsecond), 10)
	}
	b = append(b, ',')
	b = appendTupleJSON(b, s.Family.String(), s.LAddr, s.LPort, s.RAddr, s.RPort)
	b = append(b, `,"owners":[`...)
	for i, o := range s.Owners {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = appendOwnerJSON(b, o.Pid, o.Comm)
		b = append(b, `,"fd":`...)
		b = strconv.AppendInt(b, int64(o.FD), 10)
		b = append(b, '}')
	}
	b = append(b, `],"recv_q":`...)
	b = strconv.AppendUint(b, uint64(s.RecvQ), 10)
	b = append(b, `,"send_q":`...)
	b = strconv.AppendUint(b, uint64(s.SendQ), 10)
	b = append(b, `,"timer":"`...)
	b = append(b, s.Timer.String()...)
	b = append(b, '"')
	if s.Timer != snapshot.TimerOff {
		b = append(b, `,"expires_us":`...)
		b = strconv.AppendInt(b, int64(s.Expires/time.Microsecond), 10)
	}
	b = append(b, `,"retrans":`...)
	b = strconv.AppendUint(b, uint64(s.Retrans), 10)
	if s.State == tcp.Listen && s.HasDrops {
		b = append(b, `,"listen_drops":`...)
		b = strconv.AppendUint(b, uint64(s.Drops), 10)
	}
	if s.HasInfo {
		b = append(b, `,"retransmits":`...)
		b = strconv.AppendUint(b, uint64(s.Info.Retransmits), 10)
		b = append(b, `,"probes":`...)
		b = strconv.AppendUint(b, uint64(s.Info.Probes), 10)
		b = append(b, `,"backoff":`...)
		b = strconv.AppendUint(b, uint64(s.Info.Backoff), 10)
	}
	b = append(b, `,"why":`...)
	if r.Why != "" {
		b = appendJSONString(b, r.Why)
	} else {
		b = appendJSONString(b, Why(s))
	}
	b = append(b, ',')
	b = appendNetNSJSON(b, s.NetNS)
	b = appendIdentityJSON(b, r.Identity)
	if r.Event != "" {
		b = append(b, `,"event":"`...)
		b = append(b, r.Event...)
		b = append(b, '"')
	}
	return append(b, "}\n"...)
}
