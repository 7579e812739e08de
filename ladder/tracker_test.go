// SPDX-License-Identifier: Apache-2.0

package ladder_test

import (
	"context"
	"errors"
	"net/netip"
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

// At most MaxConns connections are followed: one waiting for the end of
// its TIME_WAIT is drawn early to make room; otherwise a new one is not
// followed, and counted.
func TestTrackerBounded(t *testing.T) {
	var out diagrams
	tr := ladder.NewTracker(&out, ladder.Options{MaxConns: 2})
	feed(t, tr, client(1, 1001, tcp.SynSent, tcp.Established, tcp.FinWait1, tcp.FinWait2, tcp.TimeWait))
	feed(t, tr, client(2, 1002, tcp.SynSent, tcp.Established))
	feed(t, tr, client(3, 1003, tcp.SynSent, tcp.Established)) // room made: 1 drawn
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
		t.Fatalf("drawn %+v, want connection 1 only, still open", out.ds)
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
