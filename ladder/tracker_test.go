// SPDX-License-Identifier: Apache-2.0

package ladder_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/ladder"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// client makes the transitions of a client socket through the given
// states, one millisecond apart.
func client(cookie uint64, port uint16, states ...tcp.State) []tracer.Event {
	lo := netip.MustParseAddr("127.0.0.1")
	var out []tracer.Event
	old := tcp.Close
	for i, s := range states {
		ev := tracer.Event{Time: t0.Add(time.Duration(cookie)*time.Second + time.Duration(i)*time.Millisecond), Cookie: cookie,
			Family: tcp.IPv4, LAddr: lo, LPort: port, RAddr: lo, RPort: 80, OldState: old, NewState: s,
			SndUna: 1001, SndNxt: 1001, RcvNxt: 5001, Synthesized: s == tcp.TimeWait}
		out = append(out, ev)
		old = s
	}
	return out
}

func feed(t *testing.T, tr *ladder.Tracker, evs []tracer.Event) {
	t.Helper()
	for i := range evs {
		if err := tr.Event(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
}

// At most MaxConns connections are followed: one done but for its
// TIME_WAIT no longer counts; past that, a new one is not followed, and
// counted.
func TestTrackerBounded(t *testing.T) {
	var out diagrams
	tr := ladder.NewTracker(&out, ladder.Options{MaxConns: 2})
	feed(t, tr, client(1, 1001, tcp.SynSent, tcp.Established, tcp.FinWait1, tcp.FinWait2, tcp.TimeWait))
	feed(t, tr, client(2, 1002, tcp.SynSent, tcp.Established))
	feed(t, tr, client(3, 1003, tcp.SynSent, tcp.Established)) // 1 no longer counts
	feed(t, tr, client(4, 1004, tcp.SynSent, tcp.Established)) // no room
	if tr.Dropped != 1 {
		t.Errorf("dropped %d, want 1", tr.Dropped)
	}
	for range 2 {
		if err := tr.Tick(); err != nil {
			t.Fatal(err)
		}
	}
	if len(out.ds) != 1 || out.ds[0].Ends[0].Addr.Port() != 1001 || !out.ds[0].Open {
		t.Fatalf("drawn %+v, want connection 1 only, in TIME_WAIT", out.ds)
	}
	open, err := tr.Flush()
	if err != nil || open != 2 || len(out.ds) != 1 {
		t.Errorf("at the end: %d open (want 2: connections 2 and 3), %d drawn, %v", open, len(out.ds), err)
	}
}

// A connection is drawn one tick after it ends, so that the RST of an
// abortive close, noted after its CLOSE, is on it.
func TestTrackerLateReset(t *testing.T) {
	var out diagrams
	tr := ladder.NewTracker(&out, ladder.Options{})
	evs := client(1, 1001, tcp.SynSent, tcp.Established, tcp.Close)
	feed(t, tr, evs)
	if err := tr.Tick(); err != nil {
		t.Fatal(err)
	}
	note := evs[2]
	note.Note, note.Reset = tracer.NoteLateReset, tracer.ResetSent
	if err := tr.Note(&note); err != nil {
		t.Fatal(err)
	}
	if err := tr.Tick(); err != nil {
		t.Fatal(err)
	}
	if len(out.ds) != 1 {
		t.Fatalf("%d diagrams", len(out.ds))
	}
	last := out.ds[0].Rows[len(out.ds[0].Rows)-1]
	if last.Seg != ladder.RST || last.Note != "reset: abortive close" {
		t.Errorf("last row %+v, want the RST seen sent", last)
	}
}

// Recordings that are not tcpstate events are refused by line.
func TestReplayErrors(t *testing.T) {
	good := `{"time":"2026-11-25T21:03:04Z","skaddr":"0x1","family":"ipv4","laddr":"127.0.0.1","lport":1,"raddr":"127.0.0.1","rport":2,` +
		`"oldstate":"CLOSE","newstate":"SYN_SENT","snd_una":1,"snd_nxt":2,"rcv_nxt":0}`
	for _, c := range []struct{ in, want string }{
		{good + "\n\n" + good + "\n", ""},
		{good + "\nnot json\n", "line 2: not a tcpstate event"},
		{strings.Replace(good, "ipv4", "ipx", 1), "line 1: family"},
		{strings.Replace(good, `"snd_una":1,`, "", 1), "line 1: no sequence numbers"},
		{strings.Replace(good, `"skaddr":"0x1",`, "", 1), "line 1: neither skaddr nor cookie"},
		{strings.Replace(good, "SYN_SENT", "SYN_SEND", 1), "line 1: unknown TCP state"},
		{strings.Replace(good, `}`, `,"reset":"maybe"}`, 1), "line 1: reset"},
		{`{"comm":"` + strings.Repeat("x", 70000) + `"}`, "line 1: longer than"},
		{`{"a":1}`, "line 1: not a tcpstate event"},
	} {
		tr := ladder.NewTracker(&diagrams{}, ladder.Options{})
		err := ladder.Replay(context.Background(), strings.NewReader(c.in), tr)
		var le *ladder.LineError
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%.40q: %v", c.in, err)
		case c.want != "" && (!errors.As(err, &le) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%.40q: error %v, want %q", c.in, err, c.want)
		}
	}
}

// replayTicks replays a recording through tr, then ticks once more: a
// connection is drawn one tick after it ends.
func replayTicks(t *testing.T, tr *ladder.Tracker, path string, keep func(*tracer.Event) bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var h tracerHandler = tr
	if keep != nil {
		h = filtered{tr, keep}
	}
	if err := ladder.Replay(context.Background(), f, h); err != nil {
		t.Fatal(err)
	}
	if err := tr.Tick(); err != nil {
		t.Fatal(err)
	}
}

// A connection is drawn as soon as both sides are done but for the end
// of a TIME_WAIT, not 60 s later, and says its TIME_WAIT still runs:
// both sides on this host, and each socket alone (the peer elsewhere).
func TestTrackerDrawsBeforeTimeWaitEnds(t *testing.T) {
	for _, name := range []string{"client-closes-tcp4", "server-closes-tcp6", "half-close-tcp4", "simultaneous-tcp4", "reset-tcp4", "refused-tcp6"} {
		path := filepath.Join("testdata", name+".jsonl")
		both := replayFile(t, path, nil)[0]
		for _, side := range []string{"both", "left", "right"} {
			if side == "right" && both.Ends[ladder.Right].Inferred {
				continue // refused: no server socket
			}
			t.Run(name+"/"+side, func(t *testing.T) {
				var keep func(*tracer.Event) bool
				if side != "both" {
					port := both.Ends[ladder.Left].Addr.Port()
					if side == "right" {
						port = both.Ends[ladder.Right].Addr.Port()
					}
					keep = func(ev *tracer.Event) bool { return ev.LPort == port && ev.RPort != 0 }
				}
				var out diagrams
				tr := ladder.NewTracker(&out, ladder.Options{})
				replayTicks(t, tr, path, keep)
				if len(out.ds) != 1 {
					t.Fatalf("%d diagrams before the end of TIME_WAIT, want 1", len(out.ds))
				}
				d := &out.ds[0]
				tw := inTimeWait(d)
				if d.TimeWait != tw || d.Open != tw {
					t.Errorf("TimeWait %v, Open %v; want both %v", d.TimeWait, d.Open, tw)
				}
				if title := strings.SplitN(ladder.Render{}.Text(d), "\n", 2)[0]; strings.HasSuffix(title, ", TIME_WAIT still running when drawn") != tw {
					t.Errorf("title %q", title)
				}
				if open, err := tr.Flush(); err != nil || open != 0 || len(out.ds) != 1 {
					t.Errorf("at the end: %d open, %d drawn, %v", open, len(out.ds), err)
				}
			})
		}
	}
}

// Connections not followed are counted as connections, not sockets: a
// server child on this host is the same connection as its client.
func TestTrackerDroppedCountsConnections(t *testing.T) {
	var out diagrams
	tr := ladder.NewTracker(&out, ladder.Options{MaxConns: 2})
	for i := range 5 {
		port := uint16(2000 + i)
		c := client(uint64(1+2*i), port, tcp.SynSent, tcp.Established)
		s := c[1]
		s.Cookie, s.LPort, s.RPort, s.OldState, s.NewState = uint64(2+2*i), 80, port, tcp.Listen, tcp.SynRecv
		feed(t, tr, append(c, s))
	}
	if tr.Dropped != 3 {
		t.Errorf("dropped %d, want 3 connections", tr.Dropped)
	}
}

// inTimeWait tells whether a side seen (not inferred) last entered
// TIME_WAIT.
func inTimeWait(d *ladder.Diagram) bool {
	var last [2]tcp.State
	for _, r := range d.Rows {
		for s, c := range r.Enter {
			if c.State != 0 && !c.Inferred {
				last[s] = c.State
			}
		}
	}
	return last[0] == tcp.TimeWait || last[1] == tcp.TimeWait
}
