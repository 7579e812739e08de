// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/tcpstate/tcpstate/container"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// source is a Source with fixed tallies.
type source struct {
	t    tracer.Tallies
	lost uint64
}

func (s *source) Tallies() (*tracer.Tallies, error) { t := s.t; return &t, nil }
func (s *source) Lost() (uint64, error)             { return s.lost, nil }
func (s *source) ForgetCgroups(live map[uint64]bool) error {
	for id := range s.t.Cgroups {
		if !live[id] {
			delete(s.t.Cgroups, id)
		}
	}
	return nil
}

// observe adds d to h in the bucket the BPF side would (see
// tracer/tally_test.go for the check against the kernel).
func observe(h *tracer.Histogram, d time.Duration, nativeIndex int, classicIndex int) {
	h.Count++
	h.Sum += d
	h.Native[nativeIndex]++
	if classicIndex < len(h.Classic) {
		h.Classic[classicIndex]++
	}
}

func TestTallies(t *testing.T) {
	src := &source{lost: 5}
	tl := &src.t
	tl.Transitions[tcp.Close][tcp.SynSent] = 5
	tl.Transitions[tcp.SynSent][tcp.Close] = 3
	tl.Transitions[tcp.TimeWait][tcp.Close] = 1
	tl.Resets[tcp.Established][0][tracer.ReasonAbortOnClose] = 2
	tl.Resets[tcp.SynSent][1][tracer.ReasonUnknown] = 1
	tl.ConnectFailures[tracer.FailRefused] = 1
	tl.ConnectFailures[tracer.FailTimeout] = 4
	// Native key k holds (2^((k-1)/8), 2^(k/8)] s: 1 s is key 0, 2 s key
	// 8, 3 s key 13 (2^(12/8) = 2.83 < 3 <= 2^(13/8) = 3.08).
	key := func(k int) int { return k - tracer.NativeMinKey }
	cw := &tl.StateDurations[tcp.CloseWait]
	observe(cw, time.Second, key(0), 8)    // classic bound 1 s
	observe(cw, 2*time.Second, key(8), 9)  // 5 s
	observe(cw, 3*time.Second, key(13), 9) // 5 s
	observe(cw, 2*time.Hour, key(104), 17) // above the last bound
	observe(&tl.ConnDurations[tracer.RoleServer][tracer.ClosedRemote], time.Second, key(0), 8)

	c := New(Config{})
	if err := testutil.CollectAndCompare(c, strings.NewReader(""), "tcpstate_transitions_total"); err != nil {
		t.Errorf("before Attach: %v", err)
	}
	c.Attach(src)
	want := `
# HELP tcpstate_transitions_total TCP state transitions seen, TIME_WAIT in and out included (kernel state names).
# TYPE tcpstate_transitions_total counter
tcpstate_transitions_total{from="CLOSE",to="SYN_SENT"} 5
tcpstate_transitions_total{from="SYN_SENT",to="CLOSE"} 3
tcpstate_transitions_total{from="TIME_WAIT",to="CLOSE"} 1
# HELP tcpstate_resets_total Resets sent or received, by the state the connection was in (CLOSE: sent for a segment that found no socket) and the kernel's reason for those sent (Linux 6.10 and later; unknown before).
# TYPE tcpstate_resets_total counter
tcpstate_resets_total{direction="received",reason="",state="SYN_SENT"} 1
tcpstate_resets_total{direction="sent",reason="TCP_ABORT_ON_CLOSE",state="ESTABLISHED"} 2
# HELP tcpstate_connect_failures_total Connections that went from SYN_SENT to CLOSE: refused (RST received), unreachable (ICMP unreachable answer), timeout (SYN retransmitted, no answer) or other.
# TYPE tcpstate_connect_failures_total counter
tcpstate_connect_failures_total{reason="other"} 0
tcpstate_connect_failures_total{reason="refused"} 1
tcpstate_connect_failures_total{reason="timeout"} 4
tcpstate_connect_failures_total{reason="unreachable"} 0
# HELP tcpstate_events_lost_total Transitions the kernel did not let tcpstate see (a BPF program still busy on the CPU; counted for the whole host, whatever the filters).
# TYPE tcpstate_events_lost_total counter
tcpstate_events_lost_total 5
# HELP tcpstate_connection_duration_seconds Connection lifetime, observed at its end (as tcpstate life).
# TYPE tcpstate_connection_duration_seconds histogram
`
	for i, b := range tracer.ClassicBounds {
		n := 0
		if i >= 8 {
			n = 1
		}
		want += fmt.Sprintf("tcpstate_connection_duration_seconds_bucket{closed_by=\"remote\",role=\"server\",le=\"%v\"} %d\n", b.Seconds(), n)
	}
	want += `tcpstate_connection_duration_seconds_bucket{closed_by="remote",role="server",le="+Inf"} 1
tcpstate_connection_duration_seconds_sum{closed_by="remote",role="server"} 1
tcpstate_connection_duration_seconds_count{closed_by="remote",role="server"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "tcpstate_transitions_total", "tcpstate_resets_total",
		"tcpstate_connect_failures_total", "tcpstate_events_lost_total", "tcpstate_connection_duration_seconds"); err != nil {
		t.Error(err)
	}

	// The CLOSE_WAIT histogram, native side as a scraper decodes it.
	var h *dto.Histogram
	ch := make(chan prometheus.Metric, 64)
	c.Collect(ch)
	close(ch)
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		if m.Desc() == c.stateDurDesc && d.GetLabel()[0].GetValue() == "CLOSE_WAIT" {
			h = d.Histogram
		}
	}
	if h == nil {
		t.Fatal("no CLOSE_WAIT duration histogram")
	}
	if h.GetSampleCount() != 4 || h.GetSampleSum() != 7206 || h.GetSchema() != 3 || h.GetZeroThreshold() != math.Exp2(-20) {
		t.Errorf("CLOSE_WAIT: count %d sum %v schema %d zero threshold %v, want 4, 7206, 3, 2^-20",
			h.GetSampleCount(), h.GetSampleSum(), h.GetSchema(), h.GetZeroThreshold())
	}
	buckets := map[int]int64{}
	k, n := 0, int64(0)
	for _, span := range h.GetPositiveSpan() {
		k += int(span.GetOffset()) // the first's is a key, the others' a gap
		for range span.GetLength() {
			n += h.GetPositiveDelta()[len(buckets)]
			buckets[k] = n
			k++
		}
	}
	if want := map[int]int64{0: 1, 8: 1, 13: 1, 104: 1}; !maps.Equal(buckets, want) {
		t.Errorf("CLOSE_WAIT native buckets: %v, want %v", buckets, want)
	}
	var cum []uint64
	for _, b := range h.GetBucket() {
		cum = append(cum, b.GetCumulativeCount())
	}
	if want := []uint64{0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 3, 3, 3, 3, 3, 3}; !slices.Equal(cum, want) {
		t.Errorf("CLOSE_WAIT classic cumulative counts: %v, want %v", cum, want)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

// snapshotOf is a Snapshot of socks.
func snapshotOf(socks []snapshot.Socket) Snapshot {
	return func(visit func(*snapshot.Socket) error) error {
		for i := range socks {
			s := socks[i]
			if err := visit(&s); err != nil {
				return err
			}
		}
		return nil
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
		Snapshot: snapshotOf(socks),
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

func TestGaugesByPod(t *testing.T) {
	socks := []snapshot.Socket{
		{State: tcp.Established, Inode: 1},
		{State: tcp.Established, Inode: 2},
		{State: tcp.CloseWait, Inode: 3, Age: time.Minute, AgeKnown: true},
		{State: tcp.CloseWait, Inode: 4, Age: 2 * time.Minute, AgeKnown: true},
		{State: tcp.CloseWait, Inode: 5, Age: time.Second, AgeKnown: true}, // not yet stuck
		{State: tcp.Established, Inode: 6, CgroupID: 500},                  // placed by its cgroup
		{State: tcp.Established, Inode: 7, CgroupID: 400},                  // a cgroup outside pods
		{State: tcp.TimeWait},                                              // no holder can exist
		{State: tcp.TimeWait},
	}
	api := &container.Identity{Namespace: "shop", Pod: "api-7d9", Container: "api"}
	db := &container.Identity{Namespace: "shop", Pod: "db-0", Container: "db"}
	pods := map[uint64]*container.Identity{2: api, 3: api, 4: api, 5: api}
	c := New(Config{
		StuckFor: 30 * time.Second,
		Snapshot: snapshotOf(socks),
		Owners: func(ss []snapshot.Socket) error {
			for i := range ss {
				if ss[i].CgroupID > 1 {
					t.Errorf("holders read for socket %d: its cgroup %d tells", ss[i].Inode, ss[i].CgroupID)
				}
				if ss[i].Inode == 0 {
					t.Errorf("holders read for a %v socket that no file refers to", ss[i].State)
				}
				if ss[i].Inode != 1 {
					ss[i].Owners = []snapshot.Owner{{Pid: 10, Comm: "api"}}
				}
			}
			return nil
		},
		Identify: func(s *snapshot.Socket) *container.Identity { return pods[s.Inode] },
		IdentifyCgroup: func(id uint64) *container.Identity {
			if id == 500 {
				return db
			}
			return nil
		},
	})
	want := `
# HELP tcpstate_sockets TCP sockets that exist now, by state, read at scrape time.
# TYPE tcpstate_sockets gauge
tcpstate_sockets{container="",namespace="",pod="",state="ESTABLISHED"} 2
tcpstate_sockets{container="api",namespace="shop",pod="api-7d9",state="ESTABLISHED"} 1
tcpstate_sockets{container="db",namespace="shop",pod="db-0",state="ESTABLISHED"} 1
tcpstate_sockets{container="api",namespace="shop",pod="api-7d9",state="CLOSE_WAIT"} 3
tcpstate_sockets{container="",namespace="",pod="",state="TIME_WAIT"} 2
# HELP tcpstate_stuck_sockets Sockets in a closing or connecting state for longer than --stuck-for, per holding process name.
# TYPE tcpstate_stuck_sockets gauge
tcpstate_stuck_sockets{comm="api",container="api",namespace="shop",pod="api-7d9",state="CLOSE_WAIT"} 2
# HELP tcpstate_stuck_oldest_seconds Age of the oldest stuck socket (a lower bound, as tcpstate stuck shows it).
# TYPE tcpstate_stuck_oldest_seconds gauge
tcpstate_stuck_oldest_seconds{comm="api",container="api",namespace="shop",pod="api-7d9",state="CLOSE_WAIT"} 120
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"tcpstate_sockets", "tcpstate_stuck_sockets", "tcpstate_stuck_oldest_seconds"); err != nil {
		t.Error(err)
	}
}

func TestDurationsByPod(t *testing.T) {
	key := func(k int) int { return k - tracer.NativeMinKey }
	pod := func(ms ...int) *tracer.Durations {
		d := &tracer.Durations{}
		for _, m := range ms {
			// 1 s is native key 0 and classic bound 1 s (index 8).
			observe(&d.StateDurations[tcp.CloseWait], time.Duration(m)*time.Second, key(0), 8)
		}
		return d
	}
	src := &source{t: tracer.Tallies{Cgroups: map[uint64]*tracer.Durations{
		1:   pod(1),    // the root: no pod
		500: pod(1, 1), // api's two containers' cgroups
		501: pod(1),
		600: pod(1), // gone since
	}}}
	api := &container.Identity{Namespace: "shop", Pod: "api-7d9", Container: "api"}
	live := map[uint64]bool{1: true, 500: true, 501: true, 700: true}
	c := New(Config{
		IdentifyCgroup: func(id uint64) *container.Identity {
			if id == 500 || id == 501 {
				return api
			}
			return nil
		},
		LiveCgroups: func() (map[uint64]bool, error) { return live, nil },
	})
	c.Attach(src)
	want := `
# HELP tcpstate_state_duration_seconds Time a socket spent in a state, observed when it leaves it.
# TYPE tcpstate_state_duration_seconds histogram
`
	for _, w := range []struct {
		labels string
		n      int
	}{{`container="",namespace="",pod=""`, 1}, {`container="api",namespace="shop",pod="api-7d9"`, 3}} {
		for i, b := range tracer.ClassicBounds {
			n := 0
			if i >= 8 {
				n = w.n
			}
			want += fmt.Sprintf("tcpstate_state_duration_seconds_bucket{%s,state=\"CLOSE_WAIT\",le=\"%v\"} %d\n", w.labels, b.Seconds(), n)
		}
		want += fmt.Sprintf("tcpstate_state_duration_seconds_bucket{%s,state=\"CLOSE_WAIT\",le=\"+Inf\"} %d\n", w.labels, w.n)
		want += fmt.Sprintf("tcpstate_state_duration_seconds_sum{%s,state=\"CLOSE_WAIT\"} %d\n", w.labels, w.n)
		want += fmt.Sprintf("tcpstate_state_duration_seconds_count{%s,state=\"CLOSE_WAIT\"} %d\n", w.labels, w.n)
	}
	// Cgroup 600 is gone: its histograms are dropped before the read.
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "tcpstate_state_duration_seconds"); err != nil {
		t.Error(err)
	}
	if _, ok := src.t.Cgroups[600]; ok {
		t.Error("the histograms of gone cgroup 600 were not dropped")
	}
}
