// SPDX-License-Identifier: Apache-2.0

// Package metrics turns the tracer's transitions into Prometheus metrics
// (tcpstate metrics): counters and histograms kept in memory as events
// come, and gauges computed from a socket snapshot at each scrape.
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

	"github.com/tcpstate/tcpstate/conn"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// DurationBuckets are the classic buckets of the duration histograms, in
// seconds: from a loopback handshake (100 µs) to an hour in CLOSE_WAIT.
var DurationBuckets = []float64{
	0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
	1, 5, 10, 30, 60, 120, 300, 900, 3600,
}

// Connect failure reasons (tcpstate_connect_failures_total).
const (
	// Refused: the peer answered the SYN with a RST.
	ReasonRefused = "refused"
	// Timeout: the SYN was retransmitted at least once and never
	// answered, then the kernel (tcp_syn_retries) or the application
	// gave up.
	ReasonTimeout = "timeout"
	// Other: neither, such as a connect() abandoned by the application
	// before the first retransmission (about 1 s) or an ICMP error.
	ReasonOther = "other"
)

// Snapshot reads the sockets that exist now, calling visit for each (the
// Socket may be reused after visit returns).
type Snapshot func(visit func(*snapshot.Socket) error) error

// Config is what a Collector needs besides the events.
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

// Collector is a prometheus.Collector and a tracer.Handler (also a
// tracer.Noter). Event, Note and Tick are called by the tracer's
// goroutine; Collect may run at the same time in others.
type Collector struct {
	cfg         Config
	transitions *prometheus.CounterVec
	stateDur    *prometheus.HistogramVec
	connDur     *prometheus.HistogramVec
	resets      *prometheus.CounterVec
	connectFail *prometheus.CounterVec
	lost        atomic.Uint64

	socketsDesc, stuckDesc, stuckOldestDesc, lostDesc, buildDesc *prometheus.Desc
	version                                                      string

	life *conn.LifeTracker
	// closed remembers, for one or two ticks, the connections that just
	// went to CLOSE: the state they left and the resets counted, for the
	// RST the kernel sends after CLOSE (NoteLateReset).
	closed, closedBefore map[uint64]*closedConn
}

type closedConn struct {
	from   tcp.State
	counts tracer.Reset
}

// New returns a Collector.
func New(cfg Config) *Collector {
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            name,
			Help:                            help,
			Buckets:                         DurationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, labels)
	}
	c := &Collector{
		cfg: cfg,
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpstate_transitions_total",
			Help: "TCP state transitions seen, TIME_WAIT in and out included (kernel state names).",
		}, []string{"from", "to"}),
		stateDur: histogram("tcpstate_state_duration_seconds",
			"Time a socket spent in a state, observed when it leaves it.", "state"),
		connDur: histogram("tcpstate_connection_duration_seconds",
			"Connection lifetime, observed at its end (as tcpstate life).", "role", "closed_by"),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpstate_resets_total",
			Help: "Resets sent or received, by the state the connection was in.",
		}, []string{"state", "direction"}),
		connectFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpstate_connect_failures_total",
			Help: "Connections that went from SYN_SENT to CLOSE: refused (RST received), timeout (SYN retransmitted, no answer) or other.",
		}, []string{"reason"}),
		socketsDesc: prometheus.NewDesc("tcpstate_sockets",
			"TCP sockets that exist now, by state, read at scrape time.", []string{"state"}, nil),
		stuckDesc: prometheus.NewDesc("tcpstate_stuck_sockets",
			"Sockets in a closing or connecting state for longer than --stuck-for, per holding process name.", []string{"state", "comm"}, nil),
		stuckOldestDesc: prometheus.NewDesc("tcpstate_stuck_oldest_seconds",
			"Age of the oldest stuck socket (a lower bound, as tcpstate stuck shows it).", []string{"state", "comm"}, nil),
		lostDesc: prometheus.NewDesc("tcpstate_events_lost_total",
			"Events the kernel dropped because the ring buffer was full.", nil, nil),
		buildDesc: prometheus.NewDesc("tcpstate_build_info",
			"tcpstate's version and the Go version it was built with.", []string{"version", "goversion"}, nil),
		version:      cfg.Version,
		closed:       map[uint64]*closedConn{},
		closedBefore: map[uint64]*closedConn{},
	}
	if c.version == "" {
		c.version = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			c.version = bi.Main.Version
		}
	}
	c.life = conn.NewLifeTracker(lifeOut{c})
	return c
}

// Event counts one transition.
func (c *Collector) Event(ev *tracer.Event) error {
	from, to := ev.OldState.String(), ev.NewState.String()
	c.transitions.WithLabelValues(from, to).Inc()
	if ev.InStateKnown && ev.OldState != tcp.Close {
		c.stateDur.WithLabelValues(from).Observe(ev.InState.Seconds())
	}
	if ev.OldState == tcp.SynSent && ev.NewState == tcp.Close {
		c.connectFail.WithLabelValues(ConnectFailure(ev)).Inc()
	}
	if ev.NewState == tcp.Close {
		cc := &closedConn{from: ev.OldState}
		c.countResets(cc, ev.Reset)
		c.closed[ev.ConnID()] = cc
	}
	return c.life.Event(ev)
}

// Note counts the RST the kernel sends after CLOSE (an abortive close()),
// in the state the connection left for CLOSE.
func (c *Collector) Note(ev *tracer.Event) error {
	if ev.Note == tracer.NoteLateReset {
		cc := c.closed[ev.ConnID()]
		if cc == nil {
			cc = c.closedBefore[ev.ConnID()]
		}
		if cc != nil {
			c.countResets(cc, ev.Reset)
		}
	}
	return c.life.Note(ev)
}

// countResets counts the directions of r not counted yet for cc.
func (c *Collector) countResets(cc *closedConn, r tracer.Reset) {
	state := cc.from.String()
	if r&tracer.ResetSent != 0 && cc.counts&tracer.ResetSent == 0 {
		c.resets.WithLabelValues(state, "sent").Inc()
	}
	if r&tracer.ResetReceived != 0 && cc.counts&tracer.ResetReceived == 0 {
		c.resets.WithLabelValues(state, "received").Inc()
	}
	cc.counts |= r
}

// Tick observes the connections that ended.
func (c *Collector) Tick() error {
	c.closedBefore, c.closed = c.closed, c.closedBefore
	clear(c.closed)
	return c.life.Tick()
}

// SetLost sets the events the kernel dropped so far.
func (c *Collector) SetLost(n uint64) {
	for {
		old := c.lost.Load()
		if n <= old || c.lost.CompareAndSwap(old, n) {
			return
		}
	}
}

// ConnectFailure says why a connection went from SYN_SENT to CLOSE.
func ConnectFailure(ev *tracer.Event) string {
	switch {
	case ev.Reset&tracer.ResetReceived != 0:
		return ReasonRefused
	case ev.Retrans > 0:
		return ReasonTimeout
	}
	return ReasonOther
}

// Role is "client" for a connection we opened (its path starts in
// SYN_SENT), "server" for one a listener accepted (SYN_RECV); "" when
// unknown (older than the tracer).
func Role(c *conn.Connection) string {
	if c.Partial || len(c.Path) == 0 {
		return ""
	}
	switch c.Path[0].State {
	case tcp.SynSent:
		return "client"
	case tcp.SynRecv, tcp.NewSynRecv:
		return "server"
	}
	return ""
}

// ClosedBy is "reset" when a RST was sent or received, else who sent the
// first FIN (local, remote, simultaneous); a connection that ended with
// neither (a retransmission timeout, a socket destroyed by ss -K) is
// "local": this host ended it.
func ClosedBy(c *conn.Connection) string {
	switch {
	case c.Reset != 0:
		return "reset"
	case c.ClosedBy != "":
		return c.ClosedBy
	}
	return "local"
}

// lifeOut observes the connections the LifeTracker reports. Connections
// that never reached ESTABLISHED (failed handshakes, counted by
// tcpstate_connect_failures_total) and those older than the tracer
// (unknown role and start) are left out.
type lifeOut struct{ c *Collector }

func (o lifeOut) Connection(c *conn.Connection) error {
	role := Role(c)
	if role == "" || !established(c) {
		return nil
	}
	o.c.connDur.WithLabelValues(role, ClosedBy(c)).Observe(c.Duration.Seconds())
	return nil
}

func (o lifeOut) Tick() error { return nil }

func established(c *conn.Connection) bool {
	for _, s := range c.Path {
		if s.State == tcp.Established {
			return true
		}
	}
	return false
}

// Describe sends the descriptors of every metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.transitions.Describe(ch)
	c.stateDur.Describe(ch)
	c.connDur.Describe(ch)
	c.resets.Describe(ch)
	c.connectFail.Describe(ch)
	ch <- c.socketsDesc
	ch <- c.stuckDesc
	ch <- c.stuckOldestDesc
	ch <- c.lostDesc
	ch <- c.buildDesc
}

// Collect sends the counters and histograms, and the gauges of a snapshot
// read now.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.transitions.Collect(ch)
	c.stateDur.Collect(ch)
	c.connDur.Collect(ch)
	c.resets.Collect(ch)
	c.connectFail.Collect(ch)
	ch <- prometheus.MustNewConstMetric(c.lostDesc, prometheus.CounterValue, float64(c.lost.Load()))
	ch <- prometheus.MustNewConstMetric(c.buildDesc, prometheus.GaugeValue, 1, c.version, runtime.Version())
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
