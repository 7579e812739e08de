// SPDX-License-Identifier: Apache-2.0

package conn

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// fakeWorld drives a StuckWatch without a kernel: a clock, the sockets
// snapshots list, and the rows written.
type fakeWorld struct {
	t      *testing.T
	now    time.Time
	socks  map[sockKey]snapshot.Socket
	states [][]tcp.State // states asked for, per snapshot
	out    []StuckReport
	sw     *StuckWatch
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newFakeWorld(t *testing.T, threshold time.Duration, strict bool, states ...tcp.State) *fakeWorld {
	f := &fakeWorld{t: t, now: t0, socks: map[sockKey]snapshot.Socket{}}
	f.sw = NewStuckWatch(snapshot.Options{Filter: tcp.Filter{States: states}}, threshold, strict, nil, func(r *StuckReport) error {
		c := *r
		c.Sock = new(snapshot.Socket)
		*c.Sock = *r.Sock
		f.out = append(f.out, c)
		return nil
	})
	f.sw.now = func() time.Time { return f.now }
	f.sw.owners = func(socks []snapshot.Socket) error {
		for i := range socks {
			socks[i].Owners = []snapshot.Owner{{Pid: 42, Comm: "app", FD: 7}}
		}
		return nil
	}
	f.sw.snapshot = func(states []tcp.State, visit func(*snapshot.Socket) error) error {
		f.states = append(f.states, states)
		for _, s := range f.socks {
			if slices.Contains(states, s.State) {
				s.Seen = f.now
				if err := visit(&s); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return f
}

func fakeSock(st tcp.State, lport, rport uint16) snapshot.Socket {
	lo := netip.MustParseAddr("127.0.0.1")
	return snapshot.Socket{NetNS: 1, Family: tcp.IPv4, State: st, LAddr: lo, LPort: lport, RAddr: lo, RPort: rport}
}

// put makes a snapshot list s, with an age estimate.
func (f *fakeWorld) put(s snapshot.Socket, age time.Duration, known bool) {
	s.Age, s.AgeKnown = age, known
	f.socks[socketKey(&s)] = s
}

func (f *fakeWorld) drop(s snapshot.Socket) { delete(f.socks, socketKey(&s)) }

func (f *fakeWorld) event(sk uint64, oldState, newState tcp.State, lport, rport uint16) {
	f.t.Helper()
	s := fakeSock(newState, lport, rport)
	ev := tracer.Event{Time: f.now, Skaddr: sk, Family: s.Family, LAddr: s.LAddr, LPort: lport, RAddr: s.RAddr, RPort: rport,
		OldState: oldState, NewState: newState, NetNS: 1}
	if err := f.sw.Event(&ev); err != nil {
		f.t.Fatal(err)
	}
}

// tick advances the clock and ticks, returning what was reported.
func (f *fakeWorld) tick(d time.Duration) []StuckReport {
	f.t.Helper()
	f.now = f.now.Add(d)
	if err := f.sw.Tick(); err != nil {
		f.t.Fatal(err)
	}
	out := f.out
	f.out = nil
	return out
}

func (f *fakeWorld) expect(rows []StuckReport, want ...string) {
	f.t.Helper()
	var got []string
	for _, r := range rows {
		g := fmt.Sprintf("%v %v %d>%d age=%s est=%v", r.Event, r.Sock.State, r.Sock.LPort, r.Sock.RPort,
			r.Age.Truncate(time.Microsecond), r.AgeEstimated)
		if r.Event == "left" {
			g += " " + r.Why
		}
		got = append(got, g)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		f.t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWatchCrossingAndLeaving(t *testing.T) {
	f := newFakeWorld(t, time.Second, false, tcp.CloseWait, tcp.FinWait2)
	f.expect(f.tick(0))
	f.event(0xa, tcp.Established, tcp.CloseWait, 80, 5000)
	f.put(fakeSock(tcp.CloseWait, 80, 5000), 0, true)
	f.expect(f.tick(500 * time.Millisecond))
	f.expect(f.tick(450 * time.Millisecond))
	// Crosses the threshold: reported once, at once, with the exact age.
	f.expect(f.tick(100*time.Millisecond), "stuck CLOSE_WAIT 80>5000 age=1.05s est=false")
	f.expect(f.tick(time.Second))
	// Leaves: reported with the time it spent there.
	f.event(0xa, tcp.CloseWait, tcp.LastAck, 80, 5000)
	f.drop(fakeSock(tcp.CloseWait, 80, 5000))
	f.expect(f.tick(0), "left CLOSE_WAIT 80>5000 age=2.05s est=false left CLOSE_WAIT: now LAST_ACK")
	f.expect(f.tick(2 * time.Second))
	// A socket that leaves before the threshold is never printed.
	f.event(0xb, tcp.Established, tcp.CloseWait, 80, 5001)
	f.expect(f.tick(500 * time.Millisecond))
	f.event(0xb, tcp.CloseWait, tcp.LastAck, 80, 5001)
	f.expect(f.tick(time.Second))
}

func TestWatchAlreadyStuckAndUnknownAge(t *testing.T) {
	f := newFakeWorld(t, 10*time.Second, false, tcp.CloseWait, tcp.LastAck)
	old := fakeSock(tcp.CloseWait, 80, 6000)
	young := fakeSock(tcp.CloseWait, 80, 6001)
	unknown := fakeSock(tcp.LastAck, 80, 6002)
	f.put(old, time.Minute, true)
	f.put(young, 5*time.Second, true)
	f.put(unknown, 0, false)
	if err := f.sw.Start(func(visit func(*snapshot.Socket) error) error {
		for _, s := range f.socks {
			s.Seen = f.now
			visit(&s)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.expect(f.tick(0), "stuck CLOSE_WAIT 80>6000 age=1m0s est=true")
	// Estimated 5 s old at start: stuck 5 s later.
	f.expect(f.tick(5*time.Second), "stuck CLOSE_WAIT 80>6001 age=10s est=true")
	// Age unknown: at least since it was first seen.
	f.expect(f.tick(5*time.Second), "stuck LAST_ACK 80>6002 age=10s est=true")
	// The tracer sees the old one leave: its first event links it.
	f.event(0xc, tcp.CloseWait, tcp.Close, 80, 6000)
	f.drop(old)
	f.expect(f.tick(0), "left CLOSE_WAIT 80>6000 age=1m10s est=true left CLOSE_WAIT: now CLOSE")
	// Gone without an event (a request socket, say): the next snapshot.
	f.drop(unknown)
	f.expect(f.tick(time.Second), "left LAST_ACK 80>6002 age=11s est=true left LAST_ACK: gone")
}

// FIN_WAIT2 to CLOSE may leave a TIME_WAIT or FIN_WAIT2 stub behind: the
// tracer of today does not say which (a snapshot does), one that follows
// TIME_WAIT does.
func TestWatchFinWait2Endings(t *testing.T) {
	for _, c := range []struct {
		name     string
		after    func(f *fakeWorld, s snapshot.Socket)
		want     []string
		twLength time.Duration
	}{
		{"to TIME_WAIT, seen by a snapshot", func(f *fakeWorld, s snapshot.Socket) {
			f.put(fakeSock(tcp.TimeWait, s.LPort, s.RPort), 0, true)
		}, []string{"left FIN_WAIT2 40000>80 age=3s est=false left FIN_WAIT2: now TIME_WAIT"}, 3 * time.Second},
		{"to TIME_WAIT, seen by the tracer", func(f *fakeWorld, s snapshot.Socket) {
			f.event(0xf, tcp.Close, tcp.TimeWait, s.LPort, s.RPort)
			f.put(fakeSock(tcp.TimeWait, s.LPort, s.RPort), 0, true)
		}, []string{"left FIN_WAIT2 40000>80 age=3s est=false left FIN_WAIT2: now TIME_WAIT"}, 3 * time.Second},
		{"closed", func(f *fakeWorld, s snapshot.Socket) {}, []string{"left FIN_WAIT2 40000>80 age=3s est=false left FIN_WAIT2: closed"}, 0},
		{"FIN_WAIT2 stub: still FIN_WAIT2", func(f *fakeWorld, s snapshot.Socket) {
			f.put(s, 0, true)
		}, nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeWorld(t, 2*time.Second, false, tcp.FinWait2, tcp.TimeWait)
			s := fakeSock(tcp.FinWait2, 40000, 80)
			f.event(0xe, tcp.FinWait1, tcp.FinWait2, 40000, 80)
			f.put(s, 0, true)
			f.expect(f.tick(2*time.Second), "stuck FIN_WAIT2 40000>80 age=2s est=false")
			f.now = f.now.Add(time.Second)
			f.event(0xe, tcp.FinWait2, tcp.Close, 40000, 80)
			f.drop(s)
			c.after(f, s)
			f.expect(f.tick(500*time.Millisecond), c.want...)
			if c.twLength > 0 {
				// TIME_WAIT is watched: since the exact time it was entered.
				f.expect(f.tick(1500*time.Millisecond), "stuck TIME_WAIT 40000>80 age=2s est=false")
			}
			if c.want == nil {
				f.drop(s)
				f.expect(f.tick(time.Second), "left FIN_WAIT2 40000>80 age=4.5s est=false left FIN_WAIT2: gone")
			}
		})
	}
}

func TestWatchStrictFiltersIgnoreNewSnapshotSockets(t *testing.T) {
	for _, strict := range []bool{false, true} {
		f := newFakeWorld(t, time.Second, strict, tcp.SynRecv)
		f.tick(0)
		f.put(fakeSock(tcp.SynRecv, 80, 7000), 3*time.Second, true) // a request socket
		rows := f.tick(time.Second)
		if strict && len(rows) != 0 || !strict && len(rows) != 1 {
			t.Errorf("strict %v: %v", strict, rows)
		}
	}
}

// A tracer that follows TIME_WAIT reports FIN_WAIT2 -> TIME_WAIT for the
// same socket, before or after its FIN_WAIT2 -> CLOSE.
func TestWatchSynthesizedTimeWait(t *testing.T) {
	for _, closeFirst := range []bool{false, true} {
		f := newFakeWorld(t, 2*time.Second, false, tcp.FinWait2, tcp.TimeWait)
		s := fakeSock(tcp.FinWait2, 40000, 80)
		f.event(0xe, tcp.FinWait1, tcp.FinWait2, 40000, 80)
		f.put(s, 0, true)
		f.expect(f.tick(2*time.Second), "stuck FIN_WAIT2 40000>80 age=2s est=false")
		f.now = f.now.Add(time.Second)
		f.drop(s)
		f.put(fakeSock(tcp.TimeWait, 40000, 80), 0, true)
		if closeFirst {
			f.event(0xe, tcp.FinWait2, tcp.Close, 40000, 80)
		}
		f.event(0xe, tcp.FinWait2, tcp.TimeWait, 40000, 80)
		if !closeFirst {
			f.event(0xe, tcp.FinWait2, tcp.Close, 40000, 80)
		}
		f.expect(f.tick(500*time.Millisecond), "left FIN_WAIT2 40000>80 age=3s est=false left FIN_WAIT2: now TIME_WAIT")
		f.expect(f.tick(1500*time.Millisecond), "stuck TIME_WAIT 40000>80 age=2s est=false")
		f.expect(f.tick(10 * time.Second))
	}
}
