// SPDX-License-Identifier: Apache-2.0

package ladder

import (
	"bufio"
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// maxLine bounds a line of a recording: a tcpstate event is under 600
// bytes, so a longer line is not one (and is not read whole).
const maxLine = 64 << 10

// record is an event as 'tcpstate --seq -o json' prints it.
type record struct {
	Time        *time.Time `json:"time"`
	Skaddr      string     `json:"skaddr"`
	Pid         uint32     `json:"pid"`
	Comm        string     `json:"comm"`
	Family      string     `json:"family"`
	LAddr       string     `json:"laddr"`
	LPort       uint16     `json:"lport"`
	RAddr       string     `json:"raddr"`
	RPort       uint16     `json:"rport"`
	OldState    string     `json:"oldstate"`
	NewState    string     `json:"newstate"`
	InStateUs   *int64     `json:"in_state_us"`
	NetNS       uint32     `json:"netns"`
	CgroupID    uint64     `json:"cgroup_id"`
	Synthesized bool       `json:"synthesized"`
	SndUna      *uint32    `json:"snd_una"`
	SndNxt      *uint32    `json:"snd_nxt"`
	RcvNxt      *uint32    `json:"rcv_nxt"`
	Retrans     uint32     `json:"retrans"`
	Reset       string     `json:"reset"`
	Cookie      uint64     `json:"cookie"`
}

// LineError is a line of a recording that is not a tcpstate event.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// ReorderWindow is how many events Replay holds to put them back in time
// order: the tracer's events from several CPUs can be a little out of
// order, a sorted or reversed file much more.
const ReorderWindow = 4096

// Replay reads events recorded with 'tcpstate --seq -o json' from r and
// passes them to h as the tracer would, in time order, with a Tick every
// 256 lines so that memory stays bounded, until r ends or ctx is done.
// Events are reordered within ReorderWindow lines; an event earlier than
// one already passed on, further out of order than that, is a *LineError
// (drawn, it would make false claims: negative times, a connection as
// two). Blank lines are skipped; any other line that is not such an
// event is a *LineError.
func Replay(ctx context.Context, r io.Reader, h tracer.Handler) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	var ev tracer.Event
	var win reorder
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := decode(line, &ev); err != nil {
			return &LineError{Line: n, Err: err}
		}
		if win.passed > 0 && ev.Time.Before(win.last) {
			return &LineError{Line: n, Err: fmt.Errorf("out of time order: %s before line %d, already drawn: events are put back in order within %d lines only (sort the recording by time)",
				human(win.last.Sub(ev.Time)), win.passed, ReorderWindow)}
		}
		win.push(n, &ev)
		if len(win.evs) > ReorderWindow {
			if err := h.Event(win.pop()); err != nil {
				return err
			}
		}
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil
			}
			if err := h.Tick(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &LineError{Line: n + 1, Err: fmt.Errorf("longer than %d bytes: not a tcpstate event", maxLine)}
		}
		return fmt.Errorf("read events: %w", err)
	}
	for len(win.evs) > 0 {
		if err := h.Event(win.pop()); err != nil {
			return err
		}
	}
	return h.Tick()
}

// reorder is a min-heap of events by time, then line: events of the
// same time keep the order of the file.
type reorder struct {
	evs    []lineEvent
	last   time.Time // of the last event popped
	passed int       // its line; 0 before the first
	out    tracer.Event
}

type lineEvent struct {
	line int
	ev   tracer.Event
}

func (w *reorder) Len() int { return len(w.evs) }
func (w *reorder) Less(i, j int) bool {
	a, b := &w.evs[i], &w.evs[j]
	if !a.ev.Time.Equal(b.ev.Time) {
		return a.ev.Time.Before(b.ev.Time)
	}
	return a.line < b.line
}
func (w *reorder) Swap(i, j int) { w.evs[i], w.evs[j] = w.evs[j], w.evs[i] }
func (w *reorder) Push(x any)    { w.evs = append(w.evs, x.(lineEvent)) }
func (w *reorder) Pop() any {
	x := w.evs[len(w.evs)-1]
	w.evs = w.evs[:len(w.evs)-1]
	return x
}

func (w *reorder) push(line int, ev *tracer.Event) { heap.Push(w, lineEvent{line, *ev}) }

// pop returns the earliest event, valid until the next pop.
func (w *reorder) pop() *tracer.Event {
	x := heap.Pop(w).(lineEvent)
	w.out, w.last, w.passed = x.ev, x.ev.Time, x.line
	return &w.out
}

var errNotEvent = errors.New("not a tcpstate event (want the lines of 'tcpstate --seq -o json')")

func decode(line []byte, ev *tracer.Event) error {
	var rec record
	if line[0] != '{' {
		return errNotEvent
	}
	if err := json.Unmarshal(line, &rec); err != nil {
		return fmt.Errorf("%w: %v", errNotEvent, err)
	}
	if rec.Time == nil || rec.OldState == "" || rec.NewState == "" || rec.Family == "" {
		return errNotEvent
	}
	if rec.SndUna == nil || rec.SndNxt == nil || rec.RcvNxt == nil {
		return errors.New("no sequence numbers: record with 'tcpstate --seq -o json'")
	}
	*ev = tracer.Event{Time: *rec.Time, Pid: rec.Pid, Comm: rec.Comm, LPort: rec.LPort, RPort: rec.RPort,
		NetNS: rec.NetNS, CgroupID: rec.CgroupID, Synthesized: rec.Synthesized,
		SndUna: *rec.SndUna, SndNxt: *rec.SndNxt, RcvNxt: *rec.RcvNxt, Retrans: rec.Retrans, Cookie: rec.Cookie}
	var err error
	switch rec.Family {
	case "ipv4":
		ev.Family = tcp.IPv4
	case "ipv6":
		ev.Family = tcp.IPv6
	default:
		return fmt.Errorf("family %q: want ipv4 or ipv6", rec.Family)
	}
	if ev.OldState, err = tcp.ParseState(rec.OldState); err != nil {
		return err
	}
	if ev.NewState, err = tcp.ParseState(rec.NewState); err != nil {
		return err
	}
	if ev.LAddr, err = parseAddr(rec.LAddr); err != nil {
		return fmt.Errorf("laddr: %w", err)
	}
	if ev.RAddr, err = parseAddr(rec.RAddr); err != nil {
		return fmt.Errorf("raddr: %w", err)
	}
	if len(rec.Skaddr) > 2 && rec.Skaddr[:2] == "0x" {
		if ev.Skaddr, err = strconv.ParseUint(rec.Skaddr[2:], 16, 64); err != nil {
			return fmt.Errorf("skaddr %q: %w", rec.Skaddr, err)
		}
	}
	if ev.Skaddr == 0 && ev.Cookie == 0 {
		return errors.New("neither skaddr nor cookie: cannot tell sockets apart")
	}
	if rec.InStateUs != nil {
		ev.InState, ev.InStateKnown = time.Duration(*rec.InStateUs)*time.Microsecond, true
	}
	switch rec.Reset {
	case "":
	case "sent":
		ev.Reset = tracer.ResetSent
	case "received":
		ev.Reset = tracer.ResetReceived
	case "sent+received":
		ev.Reset = tracer.ResetSent | tracer.ResetReceived
	default:
		return fmt.Errorf("reset %q: want sent, received or sent+received", rec.Reset)
	}
	return nil
}

func parseAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, err
	}
	return a.Unmap(), nil
}
