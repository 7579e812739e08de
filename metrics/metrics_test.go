// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// feed passes the transitions of one connection (cookie) to c, ms apart,
// with the time in the old state known except for the first.
type step struct {
	from, to tcp.State
	ms       int
	reset    tracer.Reset
	retrans  uint32
	synth    bool
}

func feed(t *testing.T, c *Collector, cookie uint64, steps ...step) {
	t.Helper()
	at := t0
	for i, s := range steps {
		at = at.Add(time.Duration(s.ms) * time.Millisecond)
		ev := &tracer.Event{Time: at, Cookie: cookie, OldState: s.from, NewState: s.to,
			InState: time.Duration(s.ms) * time.Millisecond, InStateKnown: i > 0,
			Reset: s.reset, Retrans: s.retrans, Synthesized: s.synth, Pid: 42, Comm: "app"}
		if err := c.Event(ev); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCounters(t *testing.T) {
	c := New(Config{})
	// A client that connects, closes first and goes through TIME_WAIT.
	feed(t, c, 1,
		step{from: tcp.Close, to: tcp.SynSent},
		step{from: tcp.SynSent, to: tcp.Established, ms: 2},
		step{from: tcp.Established, to: tcp.FinWait1, ms: 100},
		step{from: tcp.FinWait1, to: tcp.FinWait2, ms: 1},
		step{from: tcp.FinWait2, to: tcp.TimeWait, ms: 1, synth: true},
		step{from: tcp.TimeWait, to: tcp.Close, ms: 60000, synth: true})
	// The server side of it.
	feed(t, c, 2,
		step{from: tcp.Listen, to: tcp.SynRecv},
		step{from: tcp.SynRecv, to: tcp.Established, ms: 1},
		step{from: tcp.Established, to: tcp.CloseWait, ms: 100},
		step{from: tcp.CloseWait, to: tcp.LastAck, ms: 3000},
		step{from: tcp.LastAck, to: tcp.Close, ms: 1})
	// Refused, timed out, abandoned connects.
	feed(t, c, 3, step{from: tcp.Close, to: tcp.SynSent}, step{from: tcp.SynSent, to: tcp.Close, ms: 1, reset: tracer.ResetReceived})
	feed(t, c, 4, step{from: tcp.Close, to: tcp.SynSent}, step{from: tcp.SynSent, to: tcp.Close, ms: 3000, retrans: 2})
	feed(t, c, 5, step{from: tcp.Close, to: tcp.SynSent}, step{from: tcp.SynSent, to: tcp.Close, ms: 10})
	// A client reset by the peer while established.
	feed(t, c, 6,
		step{from: tcp.Close, to: tcp.SynSent},
		step{from: tcp.SynSent, to: tcp.Established, ms: 1},
		step{from: tcp.Established, to: tcp.Close, ms: 5, reset: tracer.ResetReceived})
	// An abortive close: the RST is sent after CLOSE.
	feed(t, c, 7,
		step{from: tcp.Listen, to: tcp.SynRecv},
		step{from: tcp.SynRecv, to: tcp.Established, ms: 1},
		step{from: tcp.Established, to: tcp.Close, ms: 5})
	if err := c.Note(&tracer.Event{Cookie: 7, Note: tracer.NoteLateReset, Reset: tracer.ResetSent, OldState: tcp.Close, NewState: tcp.Close}); err != nil {
		t.Fatal(err)
	}
	if err := c.Tick(); err != nil {
		t.Fatal(err)
	}
	c.SetLost(5)
	c.SetLost(3) // never goes back

	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"SYN_SENT->CLOSE", testutil.ToFloat64(c.transitions.WithLabelValues("SYN_SENT", "CLOSE")), 3},
		{"CLOSE->SYN_SENT", testutil.ToFloat64(c.transitions.WithLabelValues("CLOSE", "SYN_SENT")), 5},
		{"TIME_WAIT->CLOSE", testutil.ToFloat64(c.transitions.WithLabelValues("TIME_WAIT", "CLOSE")), 1},
		{"refused", testutil.ToFloat64(c.connectFail.WithLabelValues("refused")), 1},
		{"timeout", testutil.ToFloat64(c.connectFail.WithLabelValues("timeout")), 1},
		{"other", testutil.ToFloat64(c.connectFail.WithLabelValues("other")), 1},
		{"reset received in SYN_SENT", testutil.ToFloat64(c.resets.WithLabelValues("SYN_SENT", "received")), 1},
		{"reset received in ESTABLISHED", testutil.ToFloat64(c.resets.WithLabelValues("ESTABLISHED", "received")), 1},
		{"reset sent in ESTABLISHED", testutil.ToFloat64(c.resets.WithLabelValues("ESTABLISHED", "sent")), 1},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(c.transitions); n != 13 {
		t.Errorf("transition series: got %d, want 13", n)
	}

	hist := func(v *prometheus.HistogramVec, labels ...string) *dto.Histogram {
		t.Helper()
		var m dto.Metric
		if err := v.WithLabelValues(labels...).(prometheus.Metric).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.Histogram
	}
	h := hist(c.stateDur, "SYN_SENT")
	if h.GetSampleCount() != 5 || h.GetSampleSum() != 0.002+0.001+3+0.01+0.001 {
		t.Errorf("SYN_SENT durations: count %d sum %v, want 5 and 3.014", h.GetSampleCount(), h.GetSampleSum())
	}
	if h.GetSchema() == 0 && len(h.GetPositiveSpan()) == 0 {
		t.Errorf("SYN_SENT durations: no native buckets")
	}
	if len(h.GetBucket()) != len(DurationBuckets) {
		t.Errorf("SYN_SENT durations: %d classic buckets, want %d", len(h.GetBucket()), len(DurationBuckets))
	}
	if h := hist(c.stateDur, "TIME_WAIT"); h.GetSampleCount() != 1 || h.GetSampleSum() != 60 {
		t.Errorf("TIME_WAIT durations: count %d sum %v, want 1 and 60", h.GetSampleCount(), h.GetSampleSum())
	}
	if h := hist(c.stateDur, "CLOSE_WAIT"); h.GetSampleCount() != 1 || h.GetSampleSum() != 3 {
		t.Errorf("CLOSE_WAIT durations: count %d sum %v, want 1 and 3", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, tc := range []struct {
		role, closedBy string
		count          uint64
	}{
		{"client", "local", 1}, {"server", "remote", 1}, {"client", "reset", 1}, {"server", "reset", 1},
	} {
		if h := hist(c.connDur, tc.role, tc.closedBy); h.GetSampleCount() != tc.count {
			t.Errorf("connection durations %s/%s: count %d, want %d", tc.role, tc.closedBy, h.GetSampleCount(), tc.count)
		}
	}
	// Failed connects are not connections: 4 series only.
	if n := testutil.CollectAndCount(c.connDur); n != 4 {
		t.Errorf("connection duration series: got %d, want 4", n)
	}
	// The client's life ends when it enters TIME_WAIT.
	if h := hist(c.connDur, "client", "local"); math.Abs(h.GetSampleSum()-0.104) > 1e-9 {
		t.Errorf("client lifetime: got %v, want 0.104", h.GetSampleSum())
	}

	want := `
# HELP tcpstate_events_lost_total Events the kernel dropped because the ring buffer was full.
# TYPE tcpstate_events_lost_total counter
tcpstate_events_lost_total 5
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "tcpstate_events_lost_total"); err != nil {
		t.Error(err)
	}
}

func TestGauges(t *testing.T) {
	socks := []snapshot.Socket{
		{State: tcp.Listen, Inode: 1},
		{State: tcp.Established, Inode: 2},
		{State: tcp.Established, Inode: 3},
		{State: tcp.CloseWait, Inode: 4, Age: 40 * time.Second, AgeKnown: true},
		{State: tcp.CloseWait, Inode: 5, Age: 90 * time.Second, AgeKnown: true},
		{State: tcp.CloseWait, Inode: 6, Age: 10 * time.Second, AgeKnown: true}, // not yet
		{State: tcp.CloseWait, Inode: 7, Age: 100 * time.Second},                // age unknown
		{State: tcp.FinWait2, Age: 35 * time.Second, AgeKnown: true},            // orphan: no holder
		{State: tcp.TimeWait, Age: 50 * time.Second, AgeKnown: true},            // normal
	}
	owners := map[uint64][]snapshot.Owner{
		4: {{Pid: 10, Comm: "api"}},
		5: {{Pid: 10, Comm: "api"}, {Pid: 11, Comm: "api"}, {Pid: 12, Comm: "worker"}},
	}
	c := New(Config{
		StuckFor: 30 * time.Second,
		Version:  "v1.2.3",
		Snapshot: func(visit func(*snapshot.Socket) error) error {
			for i := range socks {
				s := socks[i]
				if err := visit(&s); err != nil {
					return err
				}
			}
			return nil
		},
		Owners: func(ss []snapshot.Socket) error {
			for i := range ss {
				ss[i].Owners = owners[ss[i].Inode]
			}
			return nil
		},
	})
	want := `
# HELP tcpstate_sockets TCP sockets that exist now, by state, read at scrape time.
# TYPE tcpstate_sockets gauge
tcpstate_sockets{state="CLOSE_WAIT"} 4
tcpstate_sockets{state="ESTABLISHED"} 2
tcpstate_sockets{state="FIN_WAIT2"} 1
tcpstate_sockets{state="LISTEN"} 1
tcpstate_sockets{state="TIME_WAIT"} 1
# HELP tcpstate_stuck_sockets Sockets in a closing or connecting state for longer than --stuck-for, per holding process name.
# TYPE tcpstate_stuck_sockets gauge
tcpstate_stuck_sockets{comm="api",state="CLOSE_WAIT"} 2
tcpstate_stuck_sockets{comm="worker",state="CLOSE_WAIT"} 1
tcpstate_stuck_sockets{comm="",state="FIN_WAIT2"} 1
# HELP tcpstate_stuck_oldest_seconds Age of the oldest stuck socket (a lower bound, as tcpstate stuck shows it).
# TYPE tcpstate_stuck_oldest_seconds gauge
tcpstate_stuck_oldest_seconds{comm="api",state="CLOSE_WAIT"} 90
tcpstate_stuck_oldest_seconds{comm="worker",state="CLOSE_WAIT"} 90
tcpstate_stuck_oldest_seconds{comm="",state="FIN_WAIT2"} 35
# HELP tcpstate_build_info tcpstate's version and the Go version it was built with.
# TYPE tcpstate_build_info gauge
`
	want += `tcpstate_build_info{goversion="` + runtime.Version() + `",version="v1.2.3"} 1` + "\n"
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"tcpstate_sockets", "tcpstate_stuck_sockets", "tcpstate_stuck_oldest_seconds", "tcpstate_build_info"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}
