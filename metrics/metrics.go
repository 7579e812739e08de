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
	"github.com/tcpstate/tcpstate/container"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// Label values of tcpstate_connect_failures_total{reason},
// tcpstate_connection_duration_seconds{role,closed_by} and
// tcpstate_resets_total{direction}, indexed by the tracer's enums.
var (
	reasons    = [tracer.NumConnectFailures]string{tracer.FailRefused: "refused", tracer.FailTimeout: "timeout", tracer.FailOther: "other", tracer.FailUnreachable: "unreachable"}
	roles      = [tracer.NumRoles]string{tracer.RoleClient: "client", tracer.RoleServer: "server"}
	closers    = [tracer.NumClosers]string{tracer.ClosedLocal: "local", tracer.ClosedRemote: "remote", tracer.ClosedSimultaneous: "simultaneous", tracer.ClosedReset: "reset", tracer.ClosedTimeout: "timeout"}
	directions = [2]string{"sent", "received"}
)

// resetReason is the reason label of tcpstate_resets_total: the kernel's
// name for a RST sent, "" for one received (its reason is the peer's).
func resetReason(dir, r int) string {
	if dir != 0 {
		return ""
	}
	return tracer.ResetReason(r).String()
}

// Snapshot reads the sockets that exist now, calling visit for each (the
// Socket may be reused after visit returns).
type Snapshot func(visit func(*snapshot.Socket) error) error

// Source is where the counters come from: a tracer in tally mode.
type Source interface {
	Tallies() (*tracer.Tallies, error)
	// Lost counts transitions the kernel did not let the tracer see.
	Lost() (uint64, error)
	// ForgetCgroups drops the histograms of cgroups not in live (see
	// tracer.Tracer.ForgetCgroups).
	ForgetCgroups(live map[uint64]bool) error
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
	// Identify names the container and pod of a socket of the snapshot
	// (nil outside one); when set, tcpstate_sockets and the stuck gauges
	// have namespace, pod and container labels, and every socket's
	// holders are read at each scrape.
	Identify func(*snapshot.Socket) *container.Identity
	// IdentifyCgroup names the container and pod of a cgroup v2 id (nil
	// outside one); when set, the duration histograms have namespace, pod
	// and container labels, from the Source's Tallies.Cgroups.
	IdentifyCgroup func(id uint64) *container.Identity
	// LiveCgroups reads the ids of every cgroup v2 there is, so that the
	// histograms of those gone are dropped (read every CgroupsForgetEvery).
	LiveCgroups func() (map[uint64]bool, error)
	// Version is the build_info version label; the module's when "".
	Version string
}

// Collector is a prometheus.Collector. The counters and histograms appear
// once a Source is attached.
type Collector struct {
	cfg    Config
	source atomic.Pointer[Source]
	// forgot is when the histograms of gone cgroups were last dropped.
	forgot atomic.Int64

	transitionsDesc, stateDurDesc, connDurDesc, resetsDesc, connectFailDesc *prometheus.Desc
	socketsDesc, stuckDesc, stuckOldestDesc, lostDesc, buildDesc            *prometheus.Desc
	listenDropsDesc                                                         *prometheus.Desc
	version                                                                 string
	drops                                                                   listenDrops // listendrops.go
}

// podLabels are the labels Config.Identify adds.
var podLabels = []string{"namespace", "pod", "container"}

// New returns a Collector.
func New(cfg Config) *Collector {
	var pod, histPod []string
	if cfg.Identify != nil {
		pod = podLabels
	}
	if cfg.IdentifyCgroup != nil {
		histPod = podLabels
	}
	c := &Collector{
		cfg: cfg,
		transitionsDesc: prometheus.NewDesc("tcpstate_transitions_total",
			"TCP state transitions seen, TIME_WAIT in and out included (kernel state names).", []string{"from", "to"}, nil),
		stateDurDesc: prometheus.NewDesc("tcpstate_state_duration_seconds",
			"Time a socket spent in a state, observed when it leaves it.", append([]string{"state"}, histPod...), nil),
		connDurDesc: prometheus.NewDesc("tcpstate_connection_duration_seconds",
			"Connection lifetime, observed at its end (as tcpstate life).", append([]string{"role", "closed_by"}, histPod...), nil),
		resetsDesc: prometheus.NewDesc("tcpstate_resets_total",
			"Resets sent or received, by the state the connection was in (CLOSE: sent for a segment that found no socket) and the kernel's reason for those sent (Linux 6.10 and later; unknown before).", []string{"state", "direction", "reason"}, nil),
		connectFailDesc: prometheus.NewDesc("tcpstate_connect_failures_total",
			"Connections that went from SYN_SENT to CLOSE: refused (RST received), unreachable (ICMP unreachable answer), timeout (SYN retransmitted, no answer) or other.", []string{"reason"}, nil),
		socketsDesc: prometheus.NewDesc("tcpstate_sockets",
			"TCP sockets that exist now, by state, read at scrape time.", append([]string{"state"}, pod...), nil),
		stuckDesc: prometheus.NewDesc("tcpstate_stuck_sockets",
			"Sockets in a closing or connecting state for longer than --stuck-for, per holding process name.", append([]string{"state", "comm"}, pod...), nil),
		stuckOldestDesc: prometheus.NewDesc("tcpstate_stuck_oldest_seconds",
			"Age of the oldest stuck socket (a lower bound, as tcpstate stuck shows it).", append([]string{"state", "comm"}, pod...), nil),
		listenDropsDesc: prometheus.NewDesc("tcpstate_listen_drops_total",
			"SYNs and handshake ACKs dropped by listeners (full accept queue: the application does not accept() fast enough), per process name of the listener's holder; a listener's drops since it exists when first seen.", append([]string{"comm"}, pod...), nil),
		lostDesc: prometheus.NewDesc("tcpstate_events_lost_total",
			"Transitions the kernel did not let tcpstate see (a BPF program still busy on the CPU; counted for the whole host, whatever the filters).", nil, nil),
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
		c.connectFailDesc, c.socketsDesc, c.stuckDesc, c.stuckOldestDesc, c.lostDesc, c.buildDesc, c.listenDropsDesc} {
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
	for _, k := range sortedKeys(g.sockets) {
		ch <- prometheus.MustNewConstMetric(c.socketsDesc, prometheus.GaugeValue, float64(g.sockets[k]), c.labels(k, k.state.String())...)
	}
	for _, k := range sortedKeys(g.stuck) {
		st := g.stuck[k]
		values := c.labels(k.where, k.state.String(), k.comm)
		ch <- prometheus.MustNewConstMetric(c.stuckDesc, prometheus.GaugeValue, float64(st.n), values...)
		ch <- prometheus.MustNewConstMetric(c.stuckOldestDesc, prometheus.GaugeValue, st.oldest.Seconds(), values...)
	}
	c.drops.add(g.listeners)
	c.collectListenDrops(ch)
}

// labels are the label values of a gauge series: first, then the pod
// labels when they are on.
func (c *Collector) labels(w where, first ...string) []string {
	if c.cfg.Identify == nil {
		return first
	}
	return append(first, w.namespace, w.pod, w.container)
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
	if err := c.forgetCgroups(src); err != nil {
		ch <- prometheus.NewInvalidMetric(c.stateDurDesc, err)
		return
	}
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
		for dir, byReason := range t.Resets[from] {
			for r, n := range byReason {
				if n > 0 {
					ch <- prometheus.MustNewConstMetric(c.resetsDesc, prometheus.CounterValue, float64(n), state(from), directions[dir], resetReason(dir, r))
				}
			}
		}
	}
	for r, n := range t.ConnectFailures {
		ch <- prometheus.MustNewConstMetric(c.connectFailDesc, prometheus.CounterValue, float64(n), reasons[r])
	}
	if c.cfg.IdentifyCgroup == nil {
		c.collectDurations(ch, &t.Durations, nil)
		return
	}
	for _, w := range sortedKeys(c.byPod(t)) {
		c.collectDurations(ch, w.d, []string{w.namespace, w.pod, w.container})
	}
}

// forgetCgroups drops the histograms of the cgroups that are gone, every
// CgroupsForgetEvery.
func (c *Collector) forgetCgroups(src Source) error {
	now := time.Now().UnixNano()
	last := c.forgot.Load()
	if c.cfg.LiveCgroups == nil || now-last < int64(CgroupsForgetEvery) || !c.forgot.CompareAndSwap(last, now) {
		return nil
	}
	live, err := c.cfg.LiveCgroups()
	if err != nil {
		return err
	}
	return src.ForgetCgroups(live)
}

// collectDurations sends the duration histograms of d that observed
// something, with the pod label values pod.
func (c *Collector) collectDurations(ch chan<- prometheus.Metric, d *tracer.Durations, pod []string) {
	for s := range tracer.NumStates {
		if h := &d.StateDurations[s]; h.Count > 0 {
			ch <- &histogram{desc: c.stateDurDesc, h: h, labels: append([]string{tcp.State(s).String()}, pod...)}
		}
	}
	for role := range tracer.NumRoles {
		for by := range tracer.NumClosers {
			if h := &d.ConnDurations[role][by]; h.Count > 0 {
				ch <- &histogram{desc: c.connDurDesc, h: h, labels: append([]string{roles[role], closers[by]}, pod...)}
			}
		}
	}
}

// CgroupsForgetEvery is how often the histograms of cgroups that are gone
// are dropped.
const CgroupsForgetEvery = 30 * time.Second

// podDurations are the duration histograms of one container's sockets.
type podDurations struct {
	namespace, pod, container string
	d                         *tracer.Durations
}

func (p podDurations) compare(o podDurations) int {
	return cmp.Or(cmp.Compare(p.namespace, o.namespace), cmp.Compare(p.pod, o.pod), cmp.Compare(p.container, o.container))
}

// byPod sums the cgroups' histograms per container; sockets in no
// container count under empty labels.
func (c *Collector) byPod(t *tracer.Tallies) map[podDurations]bool {
	sums := map[[3]string]*tracer.Durations{}
	for id, d := range t.Cgroups {
		var k [3]string
		if who := c.cfg.IdentifyCgroup(id); who != nil {
			k = [3]string{who.Namespace, who.Pod, who.Container}
		}
		sum := sums[k]
		if sum == nil {
			sum = &tracer.Durations{}
			sums[k] = sum
		}
		sum.Add(d)
	}
	out := map[podDurations]bool{}
	for k, d := range sums {
		out[podDurations{k[0], k[1], k[2], d}] = true
	}
	return out
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

// gauges are the values of the scrape-time gauges.
type gauges struct {
	sockets   map[where]int // with where.state
	stuck     map[stuckKey]*stuckGroup
	listeners []listenerDrops // those that dropped something
}

// where is a state and, with pod labels, a pod's container.
type where struct {
	state                     tcp.State
	namespace, pod, container string
}

func (w where) compare(o where) int {
	return cmp.Or(cmp.Compare(w.state, o.state), cmp.Compare(w.namespace, o.namespace),
		cmp.Compare(w.pod, o.pod), cmp.Compare(w.container, o.container))
}

type stuckKey struct {
	where
	comm string
}

func (k stuckKey) compare(o stuckKey) int {
	return cmp.Or(k.where.compare(o.where), cmp.Compare(k.comm, o.comm))
}

type stuckGroup struct {
	n      int
	oldest time.Duration
}

// sortedKeys returns the keys of m in order, so that the exposition does
// not change order from scrape to scrape.
func sortedKeys[K interface {
	comparable
	compare(K) int
}, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b K) int { return a.compare(b) })
	return keys
}

// gauges reads a snapshot: the sockets per state, and those stuck (as
// tcpstate stuck lists them: in conn.StuckStates with an age known to be at
// least StuckFor) per state and holder's name. A socket held by several
// processes counts once for each distinct name; one held by none counts
// for "". With pod labels, each socket counts for its container's pod.
func (c *Collector) gauges() (*gauges, error) {
	g := &gauges{sockets: map[where]int{}, stuck: map[stuckKey]*stuckGroup{}}
	// Sockets whose holders are needed: the stuck ones (their comm) and,
	// with pod labels, those whose cgroup does not tell their pod.
	var keep []snapshot.Socket
	var placed []where // keep[i]'s, by its cgroup; its pod unknown when !byCgroup[i]
	var byCgroup []bool
	err := c.cfg.Snapshot(func(s *snapshot.Socket) error {
		w, ok := c.cgroupPod(s)
		stuck := slices.Contains(conn.StuckStates, s.State) && s.AgeKnown && s.Age >= c.cfg.StuckFor ||
			dropsOf(s) // its holder's comm is needed too
		if !ok && !stuck && c.cfg.Identify != nil && s.Inode == 0 {
			// No process can hold it (TIME_WAIT, an orphan): placed now,
			// not kept for a walk of /proc that cannot find it (with tens
			// of thousands of TIME_WAITs that cost 47 MB a scrape).
			w, ok = podWhere(s.State, c.cfg.Identify(s)), true
		}
		if !stuck && (c.cfg.Identify == nil || ok) {
			g.sockets[w]++
			return nil
		}
		keep, placed, byCgroup = append(keep, *s), append(placed, w), append(byCgroup, ok)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if c.cfg.Owners != nil {
		if err := c.cfg.Owners(keep); err != nil {
			return nil, err
		}
	}
	for i := range keep {
		s, w := &keep[i], placed[i]
		if c.cfg.Identify != nil && !byCgroup[i] {
			w = podWhere(s.State, c.cfg.Identify(s))
		}
		g.sockets[w]++
		if dropsOf(s) {
			g.listeners = append(g.listeners, newListener(s, w))
		}
		if !slices.Contains(conn.StuckStates, s.State) || !s.AgeKnown || s.Age < c.cfg.StuckFor {
			continue
		}
		comms := make([]string, 0, len(s.Owners)+1)
		for _, o := range s.Owners {
			comms = append(comms, o.Comm)
		}
		if len(comms) == 0 {
			comms = append(comms, "")
		}
		slices.Sort(comms)
		for _, comm := range slices.Compact(comms) {
			k := stuckKey{w, comm}
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

// cgroupPod places a socket by the cgroup it was made in, when pod labels
// are on and that cgroup is not the root: a container's, or one outside
// any (no pod). Sockets of the root cgroup (all of them on cgroup v1 and
// hybrid hosts) are placed by their holders instead (ok false).
func (c *Collector) cgroupPod(s *snapshot.Socket) (w where, ok bool) {
	if c.cfg.Identify == nil || c.cfg.IdentifyCgroup == nil || s.CgroupID <= 1 {
		return where{state: s.State}, false
	}
	return podWhere(s.State, c.cfg.IdentifyCgroup(s.CgroupID)), true
}

func podWhere(state tcp.State, id *container.Identity) where {
	w := where{state: state}
	if id != nil {
		w.namespace, w.pod, w.container = id.Namespace, id.Pod, id.Container
	}
	return w
}
