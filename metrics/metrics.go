// SPDX-License-Identifier: Apache-2.0

// Package metrics serves the tracer's tallies as Prometheus metrics
// (tcpstate metrics): counters and duration histograms kept by the BPF
// side in per-CPU maps (tracer.Tallies), and gauges computed from a socket
// snapshot, all read at each scrape. Nothing is done per event in user
// space.
//
// Every label value comes from a small fixed set (state names, roles,
// closed_by, reasons, directions) or is a process name (comm of a stuck
// socket's holder): no pid, address, port or socket label, so the number
// of series is bounded.
package metrics

import (
	"cmp"
	"runtime"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/tcpstate/tcpstate/conn"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// Label values of tcpstate_connect_failures_total{reason},
// tcpstate_connection_duration_seconds{role,closed_by} and
// tcpstate_resets_total{direction}, indexed by the tracer's enums.
var (
	reasons    = [tracer.NumConnectFailures]string{tracer.FailRefused: "refused", tracer.FailTimeout: "timeout", tracer.FailOther: "other"}
	roles      = [tracer.NumRoles]string{tracer.RoleClient: "client", tracer.RoleServer: "server"}
	closers    = [tracer.NumClosers]string{tracer.ClosedLocal: "local", tracer.ClosedRemote: "remote", tracer.ClosedSimultaneous: "simultaneous", tracer.ClosedReset: "reset"}
	directions = [2]string{"sent", "received"}
)

// Snapshot reads the sockets that exist now, calling visit for each (the
// Socket may be reused after visit returns).
type Snapshot func(visit func(*snapshot.Socket) error) error

// Source is where the counters come from: a tracer in tally mode.
type Source interface {
	Tallies() (*tracer.Tallies, error)
	// Lost counts transitions the kernel did not let the tracer see.
	Lost() (uint64, error)
}

// Config is what a Collector needs besides its Source.
type Config struct {
	// Snapshot reads the sockets for tcpstate_sockets and the stuck
	// gauges; nil leaves those gauges out.
	Snapshot Snapshot
	// Owners fills the Owners of the stuck sockets (snapshot.FillOwners);
	// nil when the snapshot sets them already.
	Owners func([]snapshot.Socket) error
	// StuckFor is how long a socket must have been in one of conn.StuckStates
	// to count as stuck.
	StuckFor time.Duration
	// Version is the build_info version label; the module's when "".
	Version string
}

// Collector is a prometheus.Collector. The counters and histograms appear
// once a Source is attached.
type Collector struct {
	cfg    Config
	source atomic.Pointer[Source]

	transitionsDesc, stateDurDesc, connDurDesc, resetsDesc, connectFailDesc *prometheus.Desc
	socketsDesc, stuckDesc, stuckOldestDesc, lostDesc, buildDesc            *prometheus.Desc
	version                                                                 string
}

// New returns a Collector.
func New(cfg Config) *Collector {
	c := &Collector{
		cfg: cfg,
		transitionsDesc: prometheus.NewDesc("tcpstate_transitions_total",
			"TCP state transitions seen, TIME_WAIT in and out included (kernel state names).", []string{"from", "to"}, nil),
		stateDurDesc: prometheus.NewDesc("tcpstate_state_duration_seconds",
			"Time a socket spent in a state, observed when it leaves it.", []string{"state"}, nil),
		connDurDesc: prometheus.NewDesc("tcpstate_connection_duration_seconds",
			"Connection lifetime, observed at its end (as tcpstate life).", []string{"role", "closed_by"}, nil),
		resetsDesc: prometheus.NewDesc("tcpstate_resets_total",
			"Resets sent or received, by the state the connection was in.", []string{"state", "direction"}, nil),
		connectFailDesc: prometheus.NewDesc("tcpstate_connect_failures_total",
			"Connections that went from SYN_SENT to CLOSE: refused (RST received), timeout (SYN retransmitted, no answer) or other.", []string{"reason"}, nil),
		socketsDesc: prometheus.NewDesc("tcpstate_sockets",
			"TCP sockets that exist now, by state, read at scrape time.", []string{"state"}, nil),
		stuckDesc: prometheus.NewDesc("tcpstate_stuck_sockets",
			"Sockets in a closing or connecting state for longer than --stuck-for, per holding process name.", []string{"state", "comm"}, nil),
		stuckOldestDesc: prometheus.NewDesc("tcpstate_stuck_oldest_seconds",
			"Age of the oldest stuck socket (a lower bound, as tcpstate stuck shows it).", []string{"state", "comm"}, nil),
		lostDesc: prometheus.NewDesc("tcpstate_events_lost_total",
			"Transitions the kernel did not let tcpstate see (a BPF program still busy on the CPU).", nil, nil),
		buildDesc: prometheus.NewDesc("tcpstate_build_info",
			"tcpstate's version and the Go version it was built with.", []string{"version", "goversion"}, nil),
		version: cfg.Version,
	}
	if c.version == "" {
		c.version = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			c.version = bi.Main.Version
		}
	}
	return c
}

// Attach makes src the source of the counters and histograms.
func (c *Collector) Attach(src Source) { c.source.Store(&src) }

// Describe sends the descriptors of every metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.transitionsDesc, c.stateDurDesc, c.connDurDesc, c.resetsDesc,
		c.connectFailDesc, c.socketsDesc, c.stuckDesc, c.stuckOldestDesc, c.lostDesc, c.buildDesc} {
		ch <- d
	}
}

// Collect sends the tallies read now, and the gauges of a snapshot read
// now.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.buildDesc, prometheus.GaugeValue, 1, c.version, runtime.Version())
	if src := c.source.Load(); src != nil {
		c.collectTallies(ch, *src)
	}
	if c.cfg.Snapshot == nil {
		return
	}
	g, err := c.gauges()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.socketsDesc, err)
		return
	}
	for _, s := range tcp.States() {
		if n, ok := g.sockets[s]; ok {
			ch <- prometheus.MustNewConstMetric(c.socketsDesc, prometheus.GaugeValue, float64(n), s.String())
		}
	}
	for _, k := range g.stuckKeys() {
		st := g.stuck[k]
		ch <- prometheus.MustNewConstMetric(c.stuckDesc, prometheus.GaugeValue, float64(st.n), k.state.String(), k.comm)
		ch <- prometheus.MustNewConstMetric(c.stuckOldestDesc, prometheus.GaugeValue, st.oldest.Seconds(), k.state.String(), k.comm)
	}
}

// collectTallies sends the counters and histograms: every connect failure
// reason, and of the rest the series that counted something.
func (c *Collector) collectTallies(ch chan<- prometheus.Metric, src Source) {
	lost, err := src.Lost()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.lostDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.lostDesc, prometheus.CounterValue, float64(lost))
	t, err := src.Tallies()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.transitionsDesc, err)
		return
	}
	state := func(i int) string { return tcp.State(i).String() }
	for from := range tracer.NumStates {
		for to := range tracer.NumStates {
			if n := t.Transitions[from][to]; n > 0 {
				ch <- prometheus.MustNewConstMetric(c.transitionsDesc, prometheus.CounterValue, float64(n), state(from), state(to))
			}
		}
		for dir, n := range t.Resets[from] {
			if n > 0 {
				ch <- prometheus.MustNewConstMetric(c.resetsDesc, prometheus.CounterValue, float64(n), state(from), directions[dir])
			}
		}
		if h := &t.StateDurations[from]; h.Count > 0 {
			ch <- &histogram{desc: c.stateDurDesc, h: h, labels: []string{state(from)}}
		}
	}
	for r, n := range t.ConnectFailures {
		ch <- prometheus.MustNewConstMetric(c.connectFailDesc, prometheus.CounterValue, float64(n), reasons[r])
	}
	for role := range tracer.NumRoles {
		for by := range tracer.NumClosers {
			if h := &t.ConnDurations[role][by]; h.Count > 0 {
				ch <- &histogram{desc: c.connDurDesc, h: h, labels: []string{roles[role], closers[by]}}
			}
		}
	}
}

// histogram is a tracer.Histogram as a Prometheus histogram with both
// classic buckets (tracer.ClassicBounds) and native ones (schema
// tracer.NativeSchema), as client_golang's own would have with both.
type histogram struct {
	desc   *prometheus.Desc
	h      *tracer.Histogram
	labels []string
}

func (m *histogram) Desc() *prometheus.Desc { return m.desc }

func (m *histogram) Write(out *dto.Metric) error {
	h := m.h
	d := &dto.Histogram{
		SampleCount:   proto.Uint64(h.Count),
		SampleSum:     proto.Float64(h.Sum.Seconds()),
		Schema:        proto.Int32(tracer.NativeSchema),
		ZeroThreshold: proto.Float64(tracer.NativeZeroThreshold()),
		ZeroCount:     proto.Uint64(h.Zero),
	}
	var cum uint64
	for i, b := range tracer.ClassicBounds {
		cum += h.Classic[i]
		d.Bucket = append(d.Bucket, &dto.Bucket{CumulativeCount: proto.Uint64(cum), UpperBound: proto.Float64(b.Seconds())})
	}
	// Spans of consecutive buckets in use, counts as deltas from the
	// previous bucket in use.
	var prev int64
	next := tracer.NativeMinKey // key after the last span
	for i := 0; i < len(h.Native); i++ {
		if h.Native[i] == 0 {
			continue
		}
		key := tracer.NativeMinKey + i
		d.PositiveSpan = append(d.PositiveSpan, &dto.BucketSpan{Offset: proto.Int32(int32(key - next)), Length: proto.Uint32(0)})
		if len(d.PositiveSpan) == 1 {
			d.PositiveSpan[0].Offset = proto.Int32(int32(key))
		}
		span := d.PositiveSpan[len(d.PositiveSpan)-1]
		for ; i < len(h.Native) && h.Native[i] != 0; i++ {
			n := int64(h.Native[i])
			d.PositiveDelta = append(d.PositiveDelta, n-prev)
			prev = n
			*span.Length++
		}
		next = tracer.NativeMinKey + i
	}
	if len(d.PositiveSpan) == 0 && h.Zero == 0 {
		// Says "native histogram" to a scraper even when empty.
		d.PositiveSpan = []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(0)}}
	}
	out.Histogram = d
	out.Label = prometheus.MakeLabelPairs(m.desc, m.labels)
	return nil
}

// Gauges are the values of the scrape-time gauges.
type gauges struct {
	sockets map[tcp.State]int
	stuck   map[stuckKey]*stuckGroup
}

type stuckKey struct {
	state tcp.State
	comm  string
}

type stuckGroup struct {
	n      int
	oldest time.Duration
}

func (g *gauges) stuckKeys() []stuckKey {
	keys := make([]stuckKey, 0, len(g.stuck))
	for k := range g.stuck {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b stuckKey) int {
		return cmp.Or(cmp.Compare(a.state, b.state), cmp.Compare(a.comm, b.comm))
	})
	return keys
}

// gauges reads a snapshot: the sockets per state, and those stuck (as
// tcpstate stuck lists them: in conn.StuckStates with an age known to be at
// least StuckFor) per state and holder's name. A socket held by several
// processes counts once for each distinct name; one held by none counts
// for "".
func (c *Collector) gauges() (*gauges, error) {
	g := &gauges{sockets: map[tcp.State]int{}, stuck: map[stuckKey]*stuckGroup{}}
	var stuck []snapshot.Socket
	err := c.cfg.Snapshot(func(s *snapshot.Socket) error {
		g.sockets[s.State]++
		if slices.Contains(conn.StuckStates, s.State) && s.AgeKnown && s.Age >= c.cfg.StuckFor {
			stuck = append(stuck, *s)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if c.cfg.Owners != nil {
		if err := c.cfg.Owners(stuck); err != nil {
			return nil, err
		}
	}
	for i := range stuck {
		s := &stuck[i]
		comms := make([]string, 0, len(s.Owners)+1)
		for _, o := range s.Owners {
			comms = append(comms, o.Comm)
		}
		if len(comms) == 0 {
			comms = append(comms, "")
		}
		slices.Sort(comms)
		for _, comm := range slices.Compact(comms) {
			k := stuckKey{s.State, comm}
			sg := g.stuck[k]
			if sg == nil {
				sg = &stuckGroup{}
				g.stuck[k] = sg
			}
			sg.n++
			sg.oldest = max(sg.oldest, s.Age)
		}
	}
	return g, nil
}
