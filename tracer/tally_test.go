// SPDX-License-Identifier: Apache-2.0

package tracer_test

// Tally mode against the events: what the BPF side counts must be exactly
// what the events of the same transitions say. Durations may differ a
// little: each tracer reads the clock in its own program run (and polls
// orphans on its own schedule), so sums are compared within a margin, and
// each histogram's buckets must hold its sum.

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/conn"
	"github.com/tcpstate/tcpstate/internal/testenv"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// model computes tallies from events, as the metrics were computed in user
// space before the BPF side did it: an independent reference for the
// kernel's bookkeeping (connections through conn.LifeTracker, buckets by
// a linear search).
type model struct {
	mu   sync.Mutex
	t    tracer.Tallies // with Cgroups
	life *conn.LifeTracker
	// closed remembers, for a tick or two, connections that went to
	// CLOSE, for the RST close() sends after it.
	closed, closedBefore map[uint64]*closedConn
}

type closedConn struct {
	from  tcp.State
	reset tracer.Reset
}

func newModel() *model {
	m := &model{closed: map[uint64]*closedConn{}, closedBefore: map[uint64]*closedConn{}}
	m.t.Cgroups = map[uint64]*tracer.Durations{}
	m.life = conn.NewLifeTracker(modelLife{m})
	return m
}

func (m *model) Event(ev *tracer.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.t.Transitions[ev.OldState][ev.NewState]++
	if ev.InStateKnown && ev.OldState != tcp.Close {
		observe(&m.t.StateDurations[ev.OldState], ev.InState)
		observe(&m.cgroup(ev.CgroupID).StateDurations[ev.OldState], ev.InState)
	}
	if ev.OldState == tcp.SynSent && ev.NewState == tcp.Close {
		reason := tracer.FailOther
		switch {
		case ev.Reset&tracer.ResetReceived != 0:
			reason = tracer.FailRefused
		case ev.Retrans > 0:
			reason = tracer.FailTimeout
		}
		m.t.ConnectFailures[reason]++
	}
	if ev.NewState == tcp.Close {
		cc := &closedConn{from: ev.OldState}
		m.countResets(cc, ev.Reset)
		m.closed[ev.ConnID()] = cc
	}
	return m.life.Event(ev)
}

// cgroup returns the histograms of a socket cgroup.
func (m *model) cgroup(id uint64) *tracer.Durations {
	d := m.t.Cgroups[id]
	if d == nil {
		d = &tracer.Durations{}
		m.t.Cgroups[id] = d
	}
	return d
}

func (m *model) Note(ev *tracer.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ev.Note == tracer.NoteLateReset {
		if cc := cmpOr(m.closed[ev.ConnID()], m.closedBefore[ev.ConnID()]); cc != nil {
			m.countResets(cc, ev.Reset)
		}
	}
	return m.life.Note(ev)
}

func cmpOr(a, b *closedConn) *closedConn {
	if a != nil {
		return a
	}
	return b
}

func (m *model) countResets(cc *closedConn, r tracer.Reset) {
	if r&tracer.ResetSent != 0 && cc.reset&tracer.ResetSent == 0 {
		m.t.Resets[cc.from][0]++
	}
	if r&tracer.ResetReceived != 0 && cc.reset&tracer.ResetReceived == 0 {
		m.t.Resets[cc.from][1]++
	}
	cc.reset |= r
}

func (m *model) Tick() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closedBefore, m.closed = m.closed, m.closedBefore
	clear(m.closed)
	return m.life.Tick()
}

// modelLife observes the lifetime of connections that were established
// and began while traced.
type modelLife struct{ m *model }

func (o modelLife) Connection(c *conn.Connection) error {
	if c.Partial || len(c.Path) == 0 || !slices.ContainsFunc(c.Path, func(s conn.Step) bool { return s.State == tcp.Established }) {
		return nil
	}
	var role tracer.Role
	switch c.Path[0].State {
	case tcp.SynSent:
		role = tracer.RoleClient
	case tcp.SynRecv:
		role = tracer.RoleServer
	default:
		return nil
	}
	closer := map[string]tracer.Closer{"": tracer.ClosedLocal, "local": tracer.ClosedLocal,
		"remote": tracer.ClosedRemote, "simultaneous": tracer.ClosedSimultaneous}[c.ClosedBy]
	if c.Reset != 0 {
		closer = tracer.ClosedReset
	}
	observe(&o.m.t.ConnDurations[role][closer], c.Duration)
	observe(&o.m.cgroup(c.CgroupID).ConnDurations[role][closer], c.Duration)
	return nil
}

func (modelLife) Tick() error { return nil }

// observe adds d to h: the zero bucket up to 2^-20 s, else the first
// native bucket whose upper bound 2^(k/8) s (in whole ns) d does not
// exceed; the first classic bucket likewise.
func observe(h *tracer.Histogram, d time.Duration) {
	h.Count++
	h.Sum += d
	bound := func(k int) time.Duration {
		return time.Duration(math.Exp2(float64(k)/float64(int(1)<<tracer.NativeSchema)) * 1e9)
	}
	if d <= bound(tracer.NativeMinKey-1) {
		h.Zero++
	} else {
		i := 0
		for i < tracer.NativeBuckets-1 && d > bound(tracer.NativeMinKey+i) {
			i++
		}
		h.Native[i]++
	}
	for i, b := range tracer.ClassicBounds {
		if d <= b {
			h.Classic[i]++
			break
		}
	}
}

// idle is the handler of a tracer in tally mode.
type idle struct{}

func (idle) Event(*tracer.Event) error { return nil }
func (idle) Tick() error               { return nil }

// runTracer runs tr with h until the returned stop is called, which
// drains what is queued and closes tr.
func runTracer(t *testing.T, tr *tracer.Tracer, h tracer.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if err := tr.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestTallyMatchesEvents(t *testing.T) {
	ns := testenv.NewNetns(t)
	opts := tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}}
	evTracer, err := tracer.New(withTestHooks(opts))
	if err != nil {
		t.Fatalf("tracer.New: %v", err)
	}
	m := newModel()
	stopEvents := runTracer(t, evTracer, m)
	opts.Tally, opts.TallyCgroups = true, true
	tallyTracer, err := tracer.New(withTestHooks(opts))
	if err != nil {
		t.Fatalf("tracer.New (tally): %v", err)
	}
	runTracer(t, tallyTracer, idle{})
	if _, err := evTracer.Tallies(); err != tracer.ErrNotTallying {
		t.Errorf("Tallies of a tracer sending events: %v, want ErrNotTallying", err)
	}

	// Every way to close from the reference article, both families;
	// the TIME_WAIT of tw-reuse ends (reused), the orphan's times out.
	scenarios := []string{"client-closes", "server-closes", "half-close", "reset", "refused", "tw-reuse", "orphan-timeout"}
	// The simultaneous close needs nft (make test installs it; the
	// vmtest's machines have none).
	simultaneous := uint64(0)
	if _, err := exec.LookPath("nft"); err == nil {
		scenarios = append(scenarios, "simultaneous")
		simultaneous = 1
	} else {
		t.Log("nft not installed: no simultaneous close")
	}
	for _, network := range []string{"tcp4", "tcp6"} {
		for _, s := range scenarios {
			runPair(t, ns, s, network)
		}
	}
	// A client in a cgroup of its own: its durations are also its
	// cgroup's.
	cg, cgID := newCgroup(t)
	runOwners(t, ns, startTracer(t, tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}}), "tcp4", "", func(pid int) { moveTo(t, cg, pid) })
	time.Sleep(300 * time.Millisecond) // late RSTs swept, held ends released
	stopEvents()
	if err := m.Tick(); err != nil { // connections that ended at the drain
		t.Fatal(err)
	}
	got, err := tallyTracer.Tallies()
	if err != nil {
		t.Fatal(err)
	}
	want := &m.t
	for _, d := range tallyDiff(got, want) {
		t.Error(d)
	}
	for id, w := range want.Cgroups {
		g := got.Cgroups[id]
		if g == nil {
			t.Errorf("cgroup %d: no histograms", id)
			continue
		}
		for _, d := range durationsDiff(fmt.Sprintf("cgroup %d: ", id), g, w) {
			t.Error(d)
		}
	}
	for id := range got.Cgroups {
		if want.Cgroups[id] == nil {
			t.Errorf("cgroup %d: histograms the events do not have", id)
		}
	}
	if d := got.Cgroups[cgID]; d == nil || d.ConnDurations[tracer.RoleClient][tracer.ClosedLocal].Count != 1 {
		t.Errorf("the client in cgroup %d: %v, want one connection closed here", cgID, d)
	}
	// Its histograms stay while the cgroup does, and go with it.
	forget := func() *tracer.Tallies {
		t.Helper()
		live, err := snapshot.CgroupIDs()
		if err != nil {
			t.Fatal(err)
		}
		if err := tallyTracer.ForgetCgroups(live); err != nil {
			t.Fatal(err)
		}
		after, err := tallyTracer.Tallies()
		if err != nil {
			t.Fatal(err)
		}
		return after
	}
	if after := forget(); after.Cgroups[cgID] == nil || len(after.Cgroups) != len(got.Cgroups) {
		t.Errorf("ForgetCgroups dropped live cgroups: %d of %d left", len(after.Cgroups), len(got.Cgroups))
	}
	if err := os.Remove(cg); err != nil {
		t.Fatal(err)
	}
	// Missing at two reads in a row: gone.
	if after := forget(); after.Cgroups[cgID] == nil {
		t.Errorf("cgroup %d forgotten at the first read that misses it", cgID)
	}
	if after := forget(); after.Cgroups[cgID] != nil || len(after.Cgroups) != len(got.Cgroups)-1 {
		t.Errorf("after cgroup %d was removed: %d of %d cgroups left, its own %v", cgID, len(after.Cgroups), len(got.Cgroups), after.Cgroups[cgID])
	}

	// Not a vacuous match: the scenarios' own counts.
	for _, c := range []struct {
		what      string
		got, want uint64
	}{
		{"CLOSE -> SYN_SENT", got.Transitions[tcp.Close][tcp.SynSent], 2*(8+simultaneous) + 1}, // tw-reuse connects twice; the client in its cgroup
		{"TIME_WAIT -> CLOSE (reused)", got.Transitions[tcp.TimeWait][tcp.Close], 2},
		{"refused", got.ConnectFailures[tracer.FailRefused], 2},
		{"CLOSING -> TIME_WAIT", got.Transitions[tcp.Closing][tcp.TimeWait], 2 * simultaneous}, // the client
		{"resets sent in ESTABLISHED", got.Resets[tcp.Established][0], 2},
		{"client connections reset", got.ConnDurations[tracer.RoleClient][tracer.ClosedReset].Count, 2},
		{"simultaneous closes", got.ConnDurations[tracer.RoleClient][tracer.ClosedSimultaneous].Count, 2 * simultaneous},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.what, c.got, c.want)
		}
	}
}

// tallyDiff lists where got and want differ.
func tallyDiff(got, want *tracer.Tallies) []string {
	var out []string
	state := func(i int) string { return tcp.State(i).String() }
	for from := range tracer.NumStates {
		for to := range tracer.NumStates {
			if g, w := got.Transitions[from][to], want.Transitions[from][to]; g != w {
				out = append(out, fmt.Sprintf("transitions %s -> %s: %d, events say %d", state(from), state(to), g, w))
			}
		}
		for dir := range 2 {
			if g, w := got.Resets[from][dir], want.Resets[from][dir]; g != w {
				out = append(out, fmt.Sprintf("resets in %s (direction %d): %d, events say %d", state(from), dir, g, w))
			}
		}
	}
	for r := range tracer.NumConnectFailures {
		if g, w := got.ConnectFailures[r], want.ConnectFailures[r]; g != w {
			out = append(out, fmt.Sprintf("connect failures %d: %d, events say %d", r, g, w))
		}
	}
	return append(out, durationsDiff("", &got.Durations, &want.Durations)...)
}

// durationsDiff lists where the histograms of got and want differ.
func durationsDiff(prefix string, got, want *tracer.Durations) []string {
	var out []string
	for s := range tracer.NumStates {
		out = append(out, histDiff(prefix+"time in "+tcp.State(s).String(), &got.StateDurations[s], &want.StateDurations[s])...)
	}
	for role := range tracer.NumRoles {
		for by := range tracer.NumClosers {
			what := fmt.Sprintf("%slifetime of role %d closed by %d", prefix, role, by)
			out = append(out, histDiff(what, &got.ConnDurations[role][by], &want.ConnDurations[role][by])...)
		}
	}
	return out
}

// histDiff compares two histograms of the same observations, timed by
// two tracers: counts exactly, sums within a margin.
func histDiff(what string, got, want *tracer.Histogram) []string {
	var out []string
	if got.Count != want.Count {
		out = append(out, fmt.Sprintf("%s: %d observed, events say %d", what, got.Count, want.Count))
	}
	// An orphan's FIN_WAIT2 -> TIME_WAIT is seen when a poll finds it, and
	// a loaded machine stretches each tracer's poll period its own way.
	margin := time.Duration(got.Count)*500*time.Microsecond + 10*tracer.PollInterval
	if d := got.Sum - want.Sum; d > margin || d < -margin {
		out = append(out, fmt.Sprintf("%s: sum %v, events say %v", what, got.Sum, want.Sum))
	}
	if err := bucketsHold(got); err != nil {
		out = append(out, fmt.Sprintf("%s: %v", what, err))
	}
	return out
}

// bucketsHold checks that h's buckets add up to its count, and that its
// sum lies between the lower and the upper bounds of its observations'
// buckets, native and classic.
func bucketsHold(h *tracer.Histogram) error {
	seconds := func(k int) float64 { return math.Exp2(float64(k) / float64(int(1)<<tracer.NativeSchema)) }
	sum := h.Sum.Seconds()
	n, lo, hi := h.Zero, 0.0, float64(h.Zero)*tracer.NativeZeroThreshold()
	for i, c := range h.Native {
		k := tracer.NativeMinKey + i
		n += c
		lo += float64(c) * seconds(k-1)
		hi += float64(c) * seconds(k)
	}
	if n != h.Count || sum < lo*(1-1e-9) || sum > hi*(1+1e-9) {
		return fmt.Errorf("native buckets %v (zero %d) do not hold count %d sum %v", nonZero(h.Native[:]), h.Zero, h.Count, h.Sum)
	}
	n, lo, hi = 0, 0, 0
	for i, c := range h.Classic {
		n += c
		if i > 0 {
			lo += float64(c) * tracer.ClassicBounds[i-1].Seconds()
		}
		hi += float64(c) * tracer.ClassicBounds[i].Seconds()
	}
	over := h.Count - n // above the last bound
	lo += float64(over) * tracer.ClassicBounds[len(tracer.ClassicBounds)-1].Seconds()
	if n > h.Count || sum < lo*(1-1e-9) || (over == 0 && sum > hi*(1+1e-9)) {
		return fmt.Errorf("classic buckets %v do not hold count %d sum %v", h.Classic, h.Count, h.Sum)
	}
	return nil
}

// nonZero shows the buckets in use, by key.
func nonZero(native []uint64) map[int]uint64 {
	out := map[int]uint64{}
	for i, n := range native {
		if n > 0 {
			out[tracer.NativeMinKey+i] = n
		}
	}
	return out
}
