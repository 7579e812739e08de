// SPDX-License-Identifier: Apache-2.0

package conn

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// lifeSink keeps what a LifeTracker reports.
type lifeSink struct{ conns []Connection }

func (s *lifeSink) Connection(c *Connection) error {
	cc := *c
	cc.Path = slices.Clone(c.Path) // c is reused
	s.conns = append(s.conns, cc)
	return nil
}
func (s *lifeSink) Tick() error { return nil }

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

func (f *feed) ev(sk uint64, old, new tcp.State, mod func(*tracer.Event)) {
	f.t = f.t.Add(time.Millisecond)
	ev := tracer.Event{Time: f.t, Skaddr: sk, OldState: old, NewState: new, Pid: 42, Comm: "app", LPort: 1000, RPort: 80}
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
	conn := func(mod func(*tracer.Event)) func(*tracer.Event) {
		return func(e *tracer.Event) {
			e.Cookie = 1
			if mod != nil {
				mod(e)
			}
		}
	}
	listener := func(e *tracer.Event) { e.Cookie = 2 }
	f.ev(sk, tcp.Close, tcp.SynSent, conn(nil))
	f.ev(sk, tcp.SynSent, tcp.Established, conn(nil))
	f.ev(sk, tcp.Established, tcp.FinWait1, conn(func(e *tracer.Event) { e.RxBytes = 3 }))
	f.ev(sk, tcp.FinWait1, tcp.FinWait2, conn(nil))
	// close() in FIN_WAIT2: the kernel hands the socket to a timewait
	// socket (same cookie); the BPF side sends a note instead of CLOSE.
	lt.Note(&tracer.Event{Skaddr: sk, Cookie: 1, Note: tracer.NoteOrphan})
	// The address is reused by a new socket meanwhile.
	f.ev(sk, tcp.Close, tcp.Listen, listener)
	// The orphan gets the peer's FIN: found by the poll, from the timewait socket.
	f.ev(sk, tcp.FinWait2, tcp.TimeWait, conn(func(e *tracer.Event) { e.Synthesized, e.RxBytes = true, 3 }))
	// Its end 60 s later is no new connection.
	f.ev(sk, tcp.TimeWait, tcp.Close, conn(func(e *tracer.Event) { e.Synthesized = true }))
	f.ev(sk, tcp.Listen, tcp.Close, listener)
	if err := lt.Flush(); err != nil || f.err != nil {
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
	f.ev(7, tcp.Listen, tcp.SynRecv, nil)
	f.ev(7, tcp.SynRecv, tcp.Established, func(e *tracer.Event) { e.SndUna, e.RcvNxt = 101, 201 })
	f.ev(7, tcp.Established, tcp.CloseWait, func(e *tracer.Event) { e.SndNxt = 101; e.RxBytes = 11 })
	f.ev(7, tcp.CloseWait, tcp.Close, func(e *tracer.Event) { e.SndNxt = 101; e.RxBytes = 11 })
	// A tick may fall between the CLOSE and the RST's note: nothing is
	// reported yet.
	if err := lt.Tick(); err != nil || len(sink.conns) != 0 {
		t.Fatalf("%d connections reported at the first tick after the end (%v), want 0", len(sink.conns), err)
	}
	// close() with unread data: the kernel sends its RST after CLOSE.
	lt.Note(&tracer.Event{Skaddr: 7, Reset: tracer.ResetSent, Note: tracer.NoteLateReset})
	if err := lt.Tick(); err != nil {
		t.Fatal(err)
	}
	if len(sink.conns) != 1 {
		t.Fatalf("%d connections", len(sink.conns))
	}
	c := sink.conns[0]
	if c.Reset != tracer.ResetSent || c.ClosedBy != "remote" || c.RxBytes != 10 || !c.ISNKnown || c.ISN != 100 || c.PeerISN != 200 {
		t.Errorf("got %+v", c)
	}
}

// discardLife drops what a LifeTracker reports.
type discardLife struct{}

func (discardLife) Connection(*Connection) error { return nil }
func (discardLife) Tick() error                  { return nil }

// BenchmarkLifeTracker follows a loopback connection a round (client and
// server side, 11 transitions), ticking every 256 connections.
func BenchmarkLifeTracker(b *testing.B) {
	lt := NewLifeTracker(discardLife{})
	t := time.Unix(1000, 0)
	ev := tracer.Event{Pid: 42, Comm: "app", LPort: 1000, RPort: 80}
	step := func(cookie uint64, old, new tcp.State) {
		t = t.Add(time.Microsecond)
		ev.Time, ev.Cookie, ev.OldState, ev.NewState = t, cookie, old, new
		if err := lt.Event(&ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for i := uint64(0); b.Loop(); i++ {
		c, s := 2*i+1, 2*i+2
		step(c, tcp.Close, tcp.SynSent)
		step(s, tcp.Listen, tcp.SynRecv)
		step(c, tcp.SynSent, tcp.Established)
		step(s, tcp.SynRecv, tcp.Established)
		step(c, tcp.Established, tcp.FinWait1)
		step(s, tcp.Established, tcp.CloseWait)
		step(c, tcp.FinWait1, tcp.FinWait2)
		step(s, tcp.CloseWait, tcp.LastAck)
		step(c, tcp.FinWait2, tcp.TimeWait)
		step(s, tcp.LastAck, tcp.Close)
		step(c, tcp.TimeWait, tcp.Close)
		if i%256 == 0 {
			if err := lt.Tick(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// pathRecord is what the kernel sends in life mode for a socket's
// transitions evs: the last one, with the path of them all.
func pathRecord(evs []tracer.Event, orphan bool) tracer.Event {
	p := &tracer.Path{From: evs[0].OldState, Orphan: orphan}
	for _, ev := range evs {
		p.Steps = append(p.Steps, tracer.PathStep{State: ev.NewState, Time: ev.Time})
		switch ev.NewState {
		case tcp.Established:
			p.HandshakeSeen, p.SndUna, p.RcvNxt = true, ev.SndUna, ev.RcvNxt
		case tcp.FinWait1:
			p.FinRx = ev.RxBytes
		case tcp.CloseWait:
			p.FinSndNxt = ev.SndNxt
		}
	}
	rec := evs[len(evs)-1]
	rec.Path = p
	return rec
}

// TestLifeTrackerPathIsItsTransitions: a connection sent whole (life mode)
// is the connection its transitions make, counters, half-close, ISNs,
// orphans and late resets included.
func TestLifeTrackerPathIsItsTransitions(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(1000, 0).Add(time.Duration(ms) * time.Millisecond) }
	ev := func(ms int, old, new tcp.State, mod func(*tracer.Event)) tracer.Event {
		e := tracer.Event{Time: at(ms), Skaddr: 0x2000, Cookie: 9, OldState: old, NewState: new, Pid: 42, Comm: "app",
			Family: tcp.IPv4, LPort: 1000, RPort: 80, TxBytes: 7, RxBytes: 5, Retrans: 2, SndNxt: 500}
		if mod != nil {
			mod(&e)
		}
		return e
	}
	cases := []struct {
		name   string
		evs    []tracer.Event // of the path record
		orphan bool
		after  []tracer.Event // transitions after it (an orphan's end)
		notes  []tracer.Event
	}{
		{name: "client-half-close", evs: []tracer.Event{
			ev(1, tcp.Close, tcp.SynSent, func(e *tracer.Event) { e.TxBytes, e.RxBytes = 0, 0 }),
			ev(2, tcp.SynSent, tcp.Established, func(e *tracer.Event) { e.SndUna, e.RcvNxt, e.TxBytes, e.RxBytes = 101, 301, 1, 0 }),
			ev(5, tcp.Established, tcp.FinWait1, func(e *tracer.Event) { e.RxBytes = 2 }),
			ev(6, tcp.FinWait1, tcp.FinWait2, nil),
			ev(9, tcp.FinWait2, tcp.TimeWait, func(e *tracer.Event) { e.Synthesized, e.TxBytes, e.RxBytes = true, 8, 12 }),
		}},
		{name: "server-half-close", evs: []tracer.Event{
			ev(1, tcp.Listen, tcp.SynRecv, nil),
			ev(2, tcp.SynRecv, tcp.Established, func(e *tracer.Event) { e.SndUna, e.RcvNxt = 301, 101 }),
			ev(4, tcp.Established, tcp.CloseWait, func(e *tracer.Event) { e.SndNxt = 310 }),
			ev(7, tcp.CloseWait, tcp.LastAck, func(e *tracer.Event) { e.SndNxt = 330 }),
			ev(8, tcp.LastAck, tcp.Close, func(e *tracer.Event) { e.SndNxt = 331 }),
		}},
		{name: "orphan", orphan: true, evs: []tracer.Event{
			ev(1, tcp.Close, tcp.SynSent, nil),
			ev(2, tcp.SynSent, tcp.Established, func(e *tracer.Event) { e.SndUna, e.RcvNxt = 11, 21 }),
			ev(3, tcp.Established, tcp.FinWait1, func(e *tracer.Event) { e.RxBytes = 3 }),
			ev(4, tcp.FinWait1, tcp.FinWait2, nil),
		}, after: []tracer.Event{
			ev(30, tcp.FinWait2, tcp.TimeWait, func(e *tracer.Event) { e.Synthesized, e.RxBytes = true, 4 }),
		}},
		{name: "late-reset", evs: []tracer.Event{
			ev(1, tcp.Listen, tcp.SynRecv, nil),
			ev(2, tcp.SynRecv, tcp.Established, func(e *tracer.Event) { e.SndUna, e.RcvNxt = 1, 2 }),
			ev(3, tcp.Established, tcp.Close, func(e *tracer.Event) { e.Error = 104 }),
		}, notes: []tracer.Event{
			{Skaddr: 0x2000, Cookie: 9, Reset: tracer.ResetSent, ResetReason: 5, Note: tracer.NoteLateReset},
		}},
		{name: "older-than-tcpstate", evs: []tracer.Event{
			ev(4, tcp.Established, tcp.FinWait1, func(e *tracer.Event) { e.RxBytes = 3 }),
			ev(5, tcp.FinWait1, tcp.FinWait2, nil),
			ev(6, tcp.FinWait2, tcp.TimeWait, func(e *tracer.Event) { e.Synthesized = true }),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			run := func(whole bool) []Connection {
				sink := &lifeSink{}
				lt := NewLifeTracker(sink)
				if whole {
					rec := pathRecord(tc.evs, tc.orphan)
					if err := lt.Event(&rec); err != nil {
						t.Fatal(err)
					}
				} else {
					for i := range tc.evs {
						if err := lt.Event(&tc.evs[i]); err != nil {
							t.Fatal(err)
						}
					}
					if tc.orphan {
						if err := lt.Note(&tracer.Event{Skaddr: 0x2000, Cookie: 9, Note: tracer.NoteOrphan}); err != nil {
							t.Fatal(err)
						}
					}
				}
				for _, evs := range [][]tracer.Event{tc.after, tc.notes} {
					for i := range evs {
						var err error
						if evs[i].Note != tracer.NoteNone {
							err = lt.Note(&evs[i])
						} else {
							err = lt.Event(&evs[i])
						}
						if err != nil {
							t.Fatal(err)
						}
					}
				}
				if err := lt.Flush(); err != nil {
					t.Fatal(err)
				}
				return sink.conns
			}
			fromEvents, fromPath := run(false), run(true)
			if len(fromEvents) != 1 {
				t.Fatalf("%d connections from the transitions, want 1", len(fromEvents))
			}
			if !reflect.DeepEqual(fromPath, fromEvents) {
				t.Errorf("from the path:\n%+v\nfrom the transitions:\n%+v", fromPath, fromEvents)
			}
		})
	}
}
