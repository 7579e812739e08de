// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
)

// This file formats snapshots of sockets: the per-state summary of
// 'tcpstate ls' and the rows of 'tcpstate stuck'.

// GroupBy is how 'tcpstate ls' groups its counts within each state.
type GroupBy int

// Groupings.
const (
	ByState   GroupBy = iota // state only
	ByProcess                // owning process (pid and comm)
	ByRemote                 // remote address
	ByLocal                  // local address and port
)

// ParseGroupBy accepts "", "state", "process", "remote" and "local".
func ParseGroupBy(s string) (GroupBy, error) {
	switch s {
	case "", "state":
		return ByState, nil
	case "process":
		return ByProcess, nil
	case "remote":
		return ByRemote, nil
	case "local":
		return ByLocal, nil
	}
	return 0, fmt.Errorf("unknown grouping %q (want process, remote or local)", s)
}

// SummaryRow is one line of the summary: the sockets of one state (and
// group).
type SummaryRow struct {
	State tcp.State
	Pid   uint32 // ByProcess; 0 for sockets no process holds
	Comm  string
	Addr  netip.Addr // ByRemote: remote address; ByLocal: local address
	Port  uint16     // ByLocal: local port
	Count int
	// Oldest is the largest age lower bound in the group (see
	// snapshot.Socket.Age); OldestKnown is false when no socket of the
	// group has one.
	Oldest      time.Duration
	OldestKnown bool
}

type summaryKey struct {
	state tcp.State
	pid   uint32
	comm  string
	addr  netip.Addr
	port  uint16
}

// Summary counts sockets per state, and per group within a state.
type Summary struct {
	by         GroupBy
	rows       map[summaryKey]*SummaryRow
	total      int
	namespaces map[uint32]bool
}

// NewSummary returns an empty summary grouping by by.
func NewSummary(by GroupBy) *Summary {
	return &Summary{by: by, rows: map[summaryKey]*SummaryRow{}, namespaces: map[uint32]bool{}}
}

// Add counts s. With ByProcess a socket held by several processes counts
// once for each of them (and once, without owner, when none holds it).
func (sm *Summary) Add(s *snapshot.Socket) {
	sm.total++
	sm.namespaces[s.NetNS] = true
	k := summaryKey{state: s.State}
	switch sm.by {
	case ByRemote:
		k.addr = s.RAddr
	case ByLocal:
		k.addr, k.port = s.LAddr, s.LPort
	case ByProcess:
		var last uint32
		for i, o := range s.Owners {
			if i > 0 && o.Pid == last {
				continue // the same process on another fd
			}
			last = o.Pid
			k.pid, k.comm = o.Pid, o.Comm
			sm.add(k, s)
		}
		if len(s.Owners) > 0 {
			return
		}
	}
	sm.add(k, s)
}

func (sm *Summary) add(k summaryKey, s *snapshot.Socket) {
	r := sm.rows[k]
	if r == nil {
		r = &SummaryRow{State: k.state, Pid: k.pid, Comm: k.comm, Addr: k.addr, Port: k.port}
		sm.rows[k] = r
	}
	r.Count++
	if s.AgeKnown && (!r.OldestKnown || s.Age > r.Oldest) {
		r.Oldest, r.OldestKnown = s.Age, true
	}
}

// Total returns how many sockets were added.
func (sm *Summary) Total() int { return sm.total }

// Namespaces returns in how many network namespaces they were.
func (sm *Summary) Namespaces() int { return len(sm.namespaces) }

// Rows returns the rows in the kernel's order of states and, within a
// state, the largest groups first.
func (sm *Summary) Rows() []SummaryRow {
	out := make([]SummaryRow, 0, len(sm.rows))
	for _, r := range sm.rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b SummaryRow) int {
		return cmp.Or(
			cmp.Compare(a.State, b.State),
			cmp.Compare(b.Count, a.Count),
			cmp.Compare(a.Pid, b.Pid),
			cmp.Compare(a.Comm, b.Comm),
			a.Addr.Compare(b.Addr),
			cmp.Compare(a.Port, b.Port),
		)
	})
	return out
}

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
	widthGroup = 22 // [2001:db8::1] is wider; printed whole
)

func groupWidth(by GroupBy) int {
	if by == ByProcess {
		return widthName + 8 // pid/comm
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
		b = append(b, [...]string{"", "PID/COMM", "RADDR", "LADDR:LPORT"}[by]...)
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
	return append(b, '\n')
}

func appendSummaryJSON(b []byte, by GroupBy, r *SummaryRow) []byte {
	b = append(b, `{"state":"`...)
	b = appendState(b, r.State)
	b = append(b, '"')
	switch by {
	case ByProcess:
		b = append(b, `,"pid":`...)
		b = strconv.AppendUint(b, uint64(r.Pid), 10)
		b = append(b, `,"comm":`...)
		b = appendJSONString(b, r.Comm)
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
	return append(b, "}\n"...)
}

// appendOwnerName appends pid/comm, or "-" for no process.
func appendOwnerName(b []byte, pid uint32, comm string) []byte {
	if pid == 0 {
		return append(b, '-')
	}
	b = strconv.AppendUint(b, uint64(pid), 10)
	b = append(b, '/')
	b, _ = appendComm(b, comm)
	return b
}

// appendAddr appends an address, IPv6 in brackets as in endpoints.
func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case !a.IsValid():
		return append(b, '-')
	case a.Is6():
		b = append(b, '[')
		b = a.AppendTo(b)
		return append(b, ']')
	}
	return a.AppendTo(b)
}

func appendAddrJSON(b []byte, a netip.Addr) []byte {
	if a.IsValid() {
		b = a.AppendTo(b)
	}
	return b
}

// AppendAge appends a duration for people: 850ms, 12.3s, 4m05s, 3h02m,
// 2d04h.
func AppendAge(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		b = strconv.AppendInt(b, int64(d/time.Millisecond), 10)
		return append(b, "ms"...)
	case d < time.Minute:
		ds := int64(d / (100 * time.Millisecond)) // tenths, rounded down
		b = strconv.AppendInt(b, ds/10, 10)
		return append(b, '.', byte('0'+ds%10), 's')
	case d < time.Hour:
		s := int64(d / time.Second)
		b = strconv.AppendInt(b, s/60, 10)
		return append(b, 'm', byte('0'+s%60/10), byte('0'+s%10), 's')
	case d < 24*time.Hour:
		m := int64(d / time.Minute)
		b = strconv.AppendInt(b, m/60, 10)
		return append(b, 'h', byte('0'+m%60/10), byte('0'+m%10), 'm')
	}
	h := int64(d / time.Hour)
	b = strconv.AppendInt(b, h/24, 10)
	return append(b, 'd', byte('0'+h%24/10), byte('0'+h%24%10), 'h')
}

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
// kernel gave tcp_info), why, netns, and event (with --watch).
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
	b = append(b, `,"family":"`...)
	b = append(b, s.Family.String()...)
	b = append(b, `","laddr":"`...)
	b = appendAddrJSON(b, s.LAddr)
	b = append(b, `","lport":`...)
	b = strconv.AppendUint(b, uint64(s.LPort), 10)
	b = append(b, `,"raddr":"`...)
	b = appendAddrJSON(b, s.RAddr)
	b = append(b, `","rport":`...)
	b = strconv.AppendUint(b, uint64(s.RPort), 10)
	b = append(b, `,"owners":[`...)
	for i, o := range s.Owners {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"pid":`...)
		b = strconv.AppendUint(b, uint64(o.Pid), 10)
		b = append(b, `,"comm":`...)
		b = appendJSONString(b, o.Comm)
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
	b = append(b, `,"netns":`...)
	b = strconv.AppendUint(b, uint64(s.NetNS), 10)
	if r.Event != "" {
		b = append(b, `,"event":"`...)
		b = append(b, r.Event...)
		b = append(b, '"')
	}
	return append(b, "}\n"...)
}

// Why says in one line why a socket is in its state, with the timer
// facts that explain it.
func Why(s *snapshot.Socket) string {
	var why string
	switch s.State {
	case tcp.CloseWait:
		why = "the peer closed and this process has not called close()"
		if len(s.Owners) == 0 && s.Inode == 0 {
			why = "the peer closed and nothing has called close()"
		}
	case tcp.FinWait1:
		why = "our FIN is not acknowledged: the peer may be gone"
		if s.Timer == snapshot.TimerProbe {
			why = "our FIN waits behind data the peer does not accept: its receive window is closed"
		}
	case tcp.FinWait2:
		why = "waiting for the peer to close; tcp_fin_timeout applies only to orphans"
		switch {
		case s.Kind == snapshot.TimeWaitSocket:
			why += " (this one is: closed here, dropped in " + string(AppendAge(nil, s.Expires)) + ")"
		case len(s.Owners) > 0 || s.Inode != 0:
			why += " (this one is not: a process still holds it, so it can wait forever)"
		}
	case tcp.LastAck:
		why = "our FIN is not acknowledged, the peer may be gone"
	case tcp.Closing:
		why = "both sides sent FIN, ours is not acknowledged"
	case tcp.SynSent:
		why = "no answer to our SYN: the peer or a firewall drops it, or the host is down"
	case tcp.SynRecv:
		why = "handshake not completed by the client: our SYN-ACK is not acknowledged"
	case tcp.TimeWait:
		why = "normal after closing first: kept 60 s so late segments are not taken for a new connection"
	case tcp.Established:
		why = "connection open"
	case tcp.Listen:
		why = "listening"
	default:
		why = "state " + s.State.String()
	}
	if f := timerFacts(s); f != "" {
		why += " (" + f + ")"
	}
	return why
}

// timerFacts describes retransmissions and probes in words.
func timerFacts(s *snapshot.Socket) string {
	what := "FIN"
	switch s.State {
	case tcp.SynSent:
		what = "SYN"
	case tcp.SynRecv:
		what = "SYN-ACK"
	case tcp.FinWait1, tcp.LastAck, tcp.Closing:
	default:
		what = "data"
	}
	next := string(AppendAge(nil, s.Expires))
	switch s.Timer {
	case snapshot.TimerRetransmit:
		n := int(s.Retrans)
		if n == 0 {
			return ""
		}
		f := what + " retransmitted " + strconv.Itoa(n) + " time"
		if n > 1 {
			f += "s"
		}
		if s.HasInfo && s.Info.Backoff > 0 {
			f += ", timeout backed off to " + string(AppendAge(nil, s.Info.RTO))
		}
		return f + ", next in " + next
	case snapshot.TimerProbe:
		return strconv.Itoa(int(s.Retrans)) + " zero window probes unanswered, next in " + next
	case snapshot.TimerKeepalive:
		if s.Retrans > 0 {
			return strconv.Itoa(int(s.Retrans)) + " keepalive probes unanswered"
		}
	}
	return ""
}
