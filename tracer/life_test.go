// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"strings"
	"testing"
	"time"
)

// lifeSink keeps what a LifeTracker reports.
type lifeSink struct{ conns []Connection }

func (s *lifeSink) Connection(c *Connection) error { s.conns = append(s.conns, *c); return nil }
func (s *lifeSink) Tick() error                    { return nil }

func (s *lifeSink) paths() []string {
	var out []string
	for _, c := range s.conns {
		var st []string
		for _, p := range c.Path {
			st = append(st, p.State.String())
		}
		out = append(out, strings.Join(st, ">"))
	}
	return out
}

// feed builds events for one socket from a path, 1 ms apart.
type feed struct {
	lt  *LifeTracker
	t   time.Time
	err error
}

func (f *feed) ev(sk uint64, old, new State, mod func(*Event)) {
	f.t = f.t.Add(time.Millisecond)
	ev := Event{Time: f.t, Skaddr: sk, OldState: old, NewState: new, Pid: 42, Comm: "app", LPort: 1000, RPort: 80}
	if mod != nil {
		mod(&ev)
	}
	if err := f.lt.Event(&ev); err != nil {
		f.err = err
	}
}

func TestLifeTrackerOrphanAndReuse(t *testing.T) {
	sink := &lifeSink{}
	lt := NewLifeTracker(sink)
	f := &feed{lt: lt, t: time.Unix(1000, 0)}
	// One socket address, two sockets: the connection (cookie 1) and,
	// after it was orphaned, a listener (cookie 2).
	const sk = 0x1000
	conn := func(mod func(*Event)) func(*Event) {
		return func(e *Event) {
			e.Cookie = 1
			if mod != nil {
				mod(e)
			}
		}
	}
	listener := func(e *Event) { e.Cookie = 2 }
	f.ev(sk, Close, SynSent, conn(nil))
	f.ev(sk, SynSent, Established, conn(nil))
	f.ev(sk, Established, FinWait1, conn(func(e *Event) { e.RxBytes = 3 }))
	f.ev(sk, FinWait1, FinWait2, conn(nil))
	// close() in FIN_WAIT2: the kernel hands the socket to a timewait
	// socket (same cookie); the BPF side sends a note instead of CLOSE.
	lt.note(&Event{Skaddr: sk, Cookie: 1, flags: evOrphanNote | evSynth})
	// The address is reused by a new socket meanwhile.
	f.ev(sk, Close, Listen, listener)
	// The orphan gets the peer's FIN: found by the poll, from the timewait socket.
	f.ev(sk, FinWait2, TimeWait, conn(func(e *Event) { e.flags, e.Synthesized, e.RxBytes = evSynth, true, 3 }))
	// Its end 60 s later is no new connection.
	f.ev(sk, TimeWait, Close, conn(func(e *Event) { e.flags, e.Synthesized = evSynth, true }))
	f.ev(sk, Listen, Close, listener)
	if err := lt.Tick(); err != nil || f.err != nil {
		t.Fatal(err, f.err)
	}
	got := sink.paths()
	if len(got) != 1 || got[0] != "SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT" {
		t.Fatalf("connections %q, want the orphan's whole path once (no listener)", got)
	}
	c := sink.conns[0]
	if c.ClosedBy != "local" || c.HalfClose || c.RxBytes != 3 || c.TxBytes != 0 {
		t.Errorf("closed_by %q half_close %v rx %d tx %d", c.ClosedBy, c.HalfClose, c.RxBytes, c.TxBytes)
	}
	if c.Path[3].Duration != 2*time.Millisecond || c.Duration != 5*time.Millisecond {
		t.Errorf("FIN_WAIT2 lasted %v, connection %v", c.Path[3].Duration, c.Duration)
	}
}

func TestLifeTrackerLateReset(t *testing.T) {
	sink := &lifeSink{}
	lt := NewLifeTracker(sink)
	f := &feed{lt: lt, t: time.Unix(1000, 0)}
	f.ev(7, Listen, SynRecv, nil)
	f.ev(7, SynRecv, Established, func(e *Event) { e.SndUna, e.RcvNxt = 101, 201 })
	f.ev(7, Established, CloseWait, func(e *Event) { e.SndNxt = 101; e.RxBytes = 11 })
	f.ev(7, CloseWait, Close, func(e *Event) { e.SndNxt = 101; e.RxBytes = 11 })
	// close() with unread data: the kernel sends its RST after CLOSE.
	lt.note(&Event{Skaddr: 7, Reset: ResetSent, flags: evResetNote})
	if err := lt.Tick(); err != nil {
		t.Fatal(err)
	}
	if len(sink.conns) != 1 {
		t.Fatalf("%d connections", len(sink.conns))
	}
	c := sink.conns[0]
	if c.Reset != ResetSent || c.ClosedBy != "remote" || c.RxBytes != 10 || !c.ISNKnown || c.ISN != 100 || c.PeerISN != 200 {
		t.Errorf("got %+v", c)
	}
}
