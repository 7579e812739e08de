// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cilium/ebpf"
)

// Tally mode (Options.Tally) counts transitions and observes durations in
// the kernel, in per-CPU maps read by Tallies; no event reaches user space.
// The layout is bpf/tcpstate.h's enum tally_layout.
const (
	// NumStates bounds the state index of Tallies' arrays.
	NumStates = int(tcpstateTallyLayoutNR_STATES)
	// NativeSchema is the Prometheus native histogram schema of the
	// duration histograms: bucket key k holds (2^((k-1)/8), 2^(k/8)] s.
	NativeSchema = int32(tcpstateTallyLayoutNATIVE_SCHEMA)
	// NativeMinKey is the key of Histogram.Native[0].
	NativeMinKey = int(tcpstateTallyLayoutNATIVE_MIN_KEY)
	// NativeBuckets is the number of native buckets: 1 µs to 194 days.
	NativeBuckets = int(tcpstateTallyLayoutNATIVE_BUCKETS)
)

// ClassicBounds are the upper bounds of the classic buckets of the duration
// histograms: from a loopback handshake (100 µs) to an hour in CLOSE_WAIT.
var ClassicBounds = [tcpstateTallyLayoutCLASSIC_BUCKETS]time.Duration{
	100 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
	2 * time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour,
}

// NativeZeroThreshold is the upper bound of the zero bucket: the lower
// bound of the first native bucket, 2^-20 s.
func NativeZeroThreshold() float64 { return nativeBound(NativeMinKey - 1) }

// nativeBound is the upper bound of native bucket key k, in seconds.
func nativeBound(k int) float64 { return math.Exp2(float64(k) / float64(int(1)<<NativeSchema)) }

// Role says who opened a connection.
type Role int

// Roles, as bpf/tcpstate.h's enum role.
const (
	RoleClient Role = Role(tcpstateRoleROLE_CLIENT) // began with connect()
	RoleServer Role = Role(tcpstateRoleROLE_SERVER) // accepted by a listener
	NumRoles        = int(tcpstateTallyLayoutNR_ROLES)
)

// Closer says who ended a connection: the side that sent the first FIN,
// both at once, or a RST (either way).
type Closer int

// Closers, as bpf/tcpstate.h's enum closed_by.
const (
	ClosedLocal        Closer = Closer(tcpstateClosedByCLOSED_LOCAL)
	ClosedRemote       Closer = Closer(tcpstateClosedByCLOSED_REMOTE)
	ClosedSimultaneous Closer = Closer(tcpstateClosedByCLOSED_SIMULTANEOUS)
	ClosedReset        Closer = Closer(tcpstateClosedByCLOSED_RESET)
	NumClosers                = int(tcpstateTallyLayoutNR_CLOSED_BY)
)

// ConnectFailure says why a connection went from SYN_SENT to CLOSE.
type ConnectFailure int

// Connect failures, as bpf/tcpstate.h's enum connect_failure.
const (
	// FailRefused: the peer answered the SYN with a RST.
	FailRefused ConnectFailure = ConnectFailure(tcpstateConnectFailureFAIL_REFUSED)
	// FailTimeout: the SYN was retransmitted and never answered.
	FailTimeout ConnectFailure = ConnectFailure(tcpstateConnectFailureFAIL_TIMEOUT)
	// FailOther: neither, such as a connect() abandoned before the first
	// retransmission, or an ICMP error.
	FailOther          ConnectFailure = ConnectFailure(tcpstateConnectFailureFAIL_OTHER)
	NumConnectFailures                = int(tcpstateTallyLayoutNR_REASONS)
)

// Tallies are the totals counted in tally mode since the tracer started.
// Every count only grows.
type Tallies struct {
	Transitions [NumStates][NumStates]uint64 // [from][to]
	// Resets are counted when a connection goes to CLOSE, by the state it
	// left and direction ([0] sent, [1] received), once per direction.
	Resets          [NumStates][2]uint64
	ConnectFailures [NumConnectFailures]uint64
	// Durations of every socket traced.
	Durations
	// Cgroups are the same histograms per socket cgroup (v2 id), with
	// Options.TallyCgroups; only those that observed something.
	Cgroups map[uint64]*Durations
}

// Durations are the duration histograms of some sockets.
type Durations struct {
	// StateDurations: time spent in a state, observed when leaving it.
	StateDurations [NumStates]Histogram
	// ConnDurations: lifetime of connections that were established and
	// began while traced, at their end (CLOSE, or entering TIME_WAIT).
	ConnDurations [NumRoles][NumClosers]Histogram
}

// series returns the histogram of a series of enum tally_layout.
func (d *Durations) series(s int) *Histogram {
	if conn := s - int(tcpstateTallyLayoutHIST_CONN); conn >= 0 {
		return &d.ConnDurations[conn/NumClosers][conn%NumClosers]
	}
	return &d.StateDurations[s]
}

// Histogram is one duration histogram; buckets are not cumulative.
type Histogram struct {
	Count  uint64
	Sum    time.Duration
	Zero   uint64                // up to NativeZeroThreshold
	Native [NativeBuckets]uint64 // [i]: key NativeMinKey+i (the last also holds longer)
	// Classic[i] counts observations above ClassicBounds[i-1] and up to
	// ClassicBounds[i]; those above the last bound are in Count only.
	Classic [len(ClassicBounds)]uint64
}

// boundPad pads the bucket bounds: above any duration (BOUND_PAD).
const boundPad = 1 << 62

// setTallyBounds writes the histogram bounds, in ns, into the BPF object.
func setTallyBounds(vars *tcpstateVariableSpecs) error {
	// As many as the BPF side has room for, padded with boundPad.
	native := make([]uint64, vars.NativeBounds.Size()/8)
	classic := make([]uint64, vars.ClassicBounds.Size()/8)
	if len(native) < NativeBuckets+1 || len(classic) < len(ClassicBounds) {
		return fmt.Errorf("BPF object: room for %d and %d bucket bounds, want %d and %d", len(native), len(classic), NativeBuckets+1, len(ClassicBounds))
	}
	for i := range native {
		native[i] = boundPad
		if i <= NativeBuckets {
			native[i] = uint64(nativeBound(NativeMinKey-1+i) * 1e9) // floor: bounds are inclusive
		}
	}
	for i := range classic {
		classic[i] = boundPad
		if i < len(ClassicBounds) {
			classic[i] = uint64(ClassicBounds[i])
		}
	}
	if err := vars.NativeBounds.Set(native); err != nil {
		return fmt.Errorf("set native_bounds: %w", err)
	}
	if err := vars.ClassicBounds.Set(classic); err != nil {
		return fmt.Errorf("set classic_bounds: %w", err)
	}
	return nil
}

// ErrNotTallying is returned by Tallies when the tracer sends events.
var ErrNotTallying = errors.New("the tracer was not started in tally mode")

// Tallies reads the totals.
func (t *Tracer) Tallies() (*Tallies, error) {
	if !t.tally {
		return nil, ErrNotTallying
	}
	out := &Tallies{}
	var counts []tcpstateTallies
	if err := t.maps.TallyCounts.Lookup(uint32(0), &counts); err != nil {
		return nil, fmt.Errorf("read BPF tallies: %w", err)
	}
	for i := range counts {
		c := &counts[i]
		for from := range NumStates {
			for to := range NumStates {
				out.Transitions[from][to] += c.Transitions[from][to]
			}
			out.Resets[from][0] += c.Resets[from][0]
			out.Resets[from][1] += c.Resets[from][1]
		}
		for r := range NumConnectFailures {
			out.ConnectFailures[r] += c.ConnectFailures[r]
		}
	}
	var hists []tcpstateHist
	for series := range int(tcpstateTallyLayoutNR_HISTS) {
		if err := t.maps.Hists.Lookup(uint32(series), &hists); err != nil {
			return nil, fmt.Errorf("read BPF histograms: %w", err)
		}
		h := out.series(series)
		for i := range hists {
			h.add(&hists[i])
		}
	}
	if !t.tallyCgroups {
		return out, nil
	}
	out.Cgroups = map[uint64]*Durations{}
	var key tcpstateCgroupHistKey
	var h tcpstateHist
	it := t.maps.CgroupHists.Iterate()
	for it.Next(&key, &h) {
		d := out.Cgroups[key.Cgroup]
		if d == nil {
			d = &Durations{}
			out.Cgroups[key.Cgroup] = d
		}
		if key.Series < uint32(tcpstateTallyLayoutNR_HISTS) {
			d.series(int(key.Series)).add(&h)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read BPF histograms per cgroup: %w", err)
	}
	return out, nil
}

// ForgetCgroups removes the histograms of the cgroups that are gone: those
// not in live (every cgroup v2 id there is, just read) at this call and at
// the one before (a cgroup made after live was read is in the next one).
func (t *Tracer) ForgetCgroups(live map[uint64]bool) error {
	if !t.tallyCgroups || len(live) == 0 {
		return nil
	}
	t.forgetMu.Lock()
	defer t.forgetMu.Unlock()
	var key tcpstateCgroupHistKey
	var h tcpstateHist
	var gone []tcpstateCgroupHistKey
	missing := map[uint64]bool{}
	it := t.maps.CgroupHists.Iterate()
	for it.Next(&key, &h) {
		if live[key.Cgroup] {
			continue
		}
		missing[key.Cgroup] = true
		if t.missingCgroups[key.Cgroup] {
			gone = append(gone, key)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read BPF histograms per cgroup: %w", err)
	}
	t.missingCgroups = missing
	for _, k := range gone {
		if err := t.maps.CgroupHists.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forget the histograms of cgroup %d: %w", k.Cgroup, err)
		}
	}
	return nil
}

// Add adds o's observations to d.
func (d *Durations) Add(o *Durations) {
	for s := range d.StateDurations {
		d.StateDurations[s].Add(&o.StateDurations[s])
	}
	for r := range d.ConnDurations {
		for b := range d.ConnDurations[r] {
			d.ConnDurations[r][b].Add(&o.ConnDurations[r][b])
		}
	}
}

// Add adds o's observations to h.
func (h *Histogram) Add(o *Histogram) {
	h.Count += o.Count
	h.Sum += o.Sum
	h.Zero += o.Zero
	for i := range h.Native {
		h.Native[i] += o.Native[i]
	}
	for i := range h.Classic {
		h.Classic[i] += o.Classic[i]
	}
}

// add sums one CPU's histogram into h.
func (h *Histogram) add(c *tcpstateHist) {
	h.Count += c.Count
	h.Sum += time.Duration(c.SumNs)
	h.Zero += c.Zero
	for i := range h.Native {
		h.Native[i] += c.Native[i]
	}
	for i := range h.Classic {
		h.Classic[i] += c.Classic[i]
	}
}
