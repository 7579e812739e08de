// SPDX-License-Identifier: Apache-2.0

package conn

import (
	"slices"
	"time"

	"net/netip"

	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// StuckStates are the states a socket should pass through quickly: the
// ones tcpstate stuck lists, and tcpstate_stuck_sockets counts, by default.
var StuckStates = []tcp.State{
	tcp.CloseWait, tcp.FinWait1, tcp.FinWait2, tcp.LastAck,
	tcp.Closing, tcp.SynSent, tcp.SynRecv,
}

// StuckReport is a socket that has been in its state for the threshold
// (Event "stuck"), or one reported so that left it (Event "left", with
// Why).
type StuckReport struct {
	Time         time.Time
	Event        string
	Sock         *snapshot.Socket
	Age          time.Duration // in the state, at Time
	AgeEstimated bool          // Age is a lower bound
	Why          string
}

// Found is how many sockets were reported stuck.
func (sw *StuckWatch) Found() int { return sw.found }

// refreshInterval is how often a StuckWatch takes a snapshot, to see what the
// tracer cannot: request sockets, TIME_WAIT and FIN_WAIT2 stubs coming and
// going.
const refreshInterval = time.Second

// sockKey identifies a socket across the tracer's events and snapshots.
type sockKey struct {
	netns        uint32
	family       tcp.Family
	laddr, raddr netip.Addr
	lport, rport uint16
}

func eventKey(ev *tracer.Event) sockKey {
	return sockKey{ev.NetNS, ev.Family, ev.LAddr, ev.RAddr, ev.LPort, ev.RPort}
}

func socketKey(s *snapshot.Socket) sockKey {
	return sockKey{s.NetNS, s.Family, s.LAddr, s.RAddr, s.LPort, s.RPort}
}

// watchEntry is a socket in a watched state.
type watchEntry struct {
	key    sockKey
	skaddr uint64 // 0 while known only from snapshots
	state  tcp.State
	since  time.Time // when it entered the state, or a lower bound
	exact  bool      // since is the transition's time, seen by the tracer
	// reported: printed as stuck (and so to be printed when it leaves)
	reported bool
	sock     snapshot.Socket // details from the latest snapshot
	haveSock bool
	// closing: the tracer saw the socket go to CLOSE from a state that
	// may leave a TIME_WAIT or FIN_WAIT2 stub behind; the next snapshot
	// tells which.
	closing  bool
	closedAt time.Time
	missed   int // snapshots in a row that did not list it
}

// StuckWatch follows the sockets in the watched states, from the tracer's
// transitions and a snapshot every refreshInterval (for what the tracer
// cannot see: request sockets, TIME_WAIT and FIN_WAIT2 stubs), and
// reports each socket the moment it has been in its state for the
// threshold, and again when it leaves. It is a tracer.Handler.
type StuckWatch struct {
	opts      snapshot.Options
	states    map[tcp.State]bool
	threshold time.Duration
	out       func(*StuckReport) error
	// The outside world, replaced by tests: a snapshot of the sockets in
	// these states (with the filters but those on owners and cgroup),
	// the owners of sockets, the clock.
	snapshot func(states []tcp.State, visit func(*snapshot.Socket) error) error
	owners   func([]snapshot.Socket) error
	now      func() time.Time
	// strict: filters on owners or cgroup, which a snapshot cannot check
	// for sockets whose owner has closed them; after the start only the
	// tracer (which filters in the kernel) adds sockets.
	strict      bool
	bySk        map[uint64]*watchEntry
	byKey       map[sockKey]*watchEntry
	lastRefresh time.Time
	found       int
}

// NewStuckWatch watches the sockets of opts.States (with the filters of
// opts) for threshold, reporting to out. snap takes the refreshing
// snapshots, in the given states. Strict says that opts filters
// on owners or cgroup: sockets a later snapshot finds are then not added.
func NewStuckWatch(opts snapshot.Options, threshold time.Duration, strict bool,
	snap func(states []tcp.State, visit func(*snapshot.Socket) error) error, out func(*StuckReport) error) *StuckWatch {
	sw := &StuckWatch{opts: opts, threshold: threshold, out: out, strict: strict, snapshot: snap,
		owners: snapshot.FillOwners, now: time.Now,
		states: map[tcp.State]bool{}, bySk: map[uint64]*watchEntry{}, byKey: map[sockKey]*watchEntry{}}
	for _, s := range opts.States {
		sw.states[s] = true
	}
	return sw
}

// Start loads the sockets already in a watched state from a snapshot
// with all the filters (take), before the first Tick.
func (sw *StuckWatch) Start(take func(visit func(*snapshot.Socket) error) error) error {
	err := take(func(s *snapshot.Socket) error {
		_, err := sw.fromSnapshot(s, s.Seen, true)
		return err
	})
	sw.lastRefresh = sw.now()
	return err
}

// insert adds e, replacing (as gone) what was known of its 4-tuple.
func (sw *StuckWatch) insert(e *watchEntry) error {
	if old := sw.byKey[e.key]; old != nil && old != e {
		at := e.since
		if old.closing {
			at = old.closedAt
		}
		if err := sw.left(old, at, "gone"); err != nil {
			return err
		}
	}
	sw.byKey[e.key] = e
	if e.skaddr != 0 {
		sw.bySk[e.skaddr] = e
	}
	return nil
}

func (sw *StuckWatch) remove(e *watchEntry) {
	if sw.byKey[e.key] == e {
		delete(sw.byKey, e.key)
	}
	if e.skaddr != 0 && sw.bySk[e.skaddr] == e {
		delete(sw.bySk, e.skaddr)
	}
}

// left forgets e, printing it if it was reported stuck.
func (sw *StuckWatch) left(e *watchEntry, at time.Time, how string) error {
	sw.remove(e)
	if !e.reported || !e.haveSock {
		return nil
	}
	if at.Before(e.since) {
		at = e.since
	}
	return sw.out(&StuckReport{Time: at, Event: "left", Sock: &e.sock, Age: at.Sub(e.since),
		AgeEstimated: !e.exact, Why: "left " + e.state.String() + ": " + how})
}

// mayLinger says whether going to CLOSE from s may leave a TIME_WAIT or
// FIN_WAIT2 stub, which the kernel's tracepoint does not report: a
// snapshot, or a tracer event synthesized for TIME_WAIT, tells.
func mayLinger(s tcp.State) bool {
	return s == tcp.FinWait1 || s == tcp.FinWait2 || s == tcp.Closing
}

// Event follows one transition of the tracer.
func (sw *StuckWatch) Event(ev *tracer.Event) error {
	key := eventKey(ev)
	// A socket gone to CLOSE from FIN_WAIT1/2 or CLOSING: the next event
	// of its 4-tuple says what it left behind (tracers that follow
	// TIME_WAIT report it), without waiting for a snapshot.
	if k := sw.byKey[key]; k != nil && k.closing && !ev.Time.Before(k.closedAt) {
		how := "closed"
		if ev.NewState == tcp.TimeWait {
			how = "now TIME_WAIT"
		}
		if err := sw.left(k, k.closedAt, how); err != nil {
			return err
		}
	}
	e := sw.bySk[ev.Skaddr]
	if e != nil && e.state != ev.OldState && e.state != ev.NewState && (e.exact || ev.Time.Before(e.since)) {
		return nil // out of order, or older than what is known of the socket
	}
	if e == nil {
		// A socket known from a snapshot, seen by the tracer for the first time.
		if k := sw.byKey[key]; k != nil && k.skaddr == 0 && !k.closing {
			if k.state == ev.OldState || k.state == ev.NewState {
				e = k
				e.skaddr = ev.Skaddr
				sw.bySk[ev.Skaddr] = e
			} else if err := sw.left(k, ev.Time, "gone"); err != nil {
				return err
			}
		}
	}
	if e != nil && !e.closing {
		if e.state == ev.NewState {
			if !e.exact && ev.Time.Before(e.since) {
				e.since, e.exact = ev.Time, true
			}
			return nil
		}
		if ev.NewState == tcp.Close && mayLinger(ev.OldState) {
			sw.pending(e, ev.Time)
		} else if err := sw.left(e, ev.Time, "now "+ev.NewState.String()); err != nil {
			return err
		}
	} else if e == nil && ev.NewState == tcp.Close && mayLinger(ev.OldState) && sw.states[tcp.TimeWait] && sw.byKey[key] == nil {
		// Not watched in its old state, but it may enter TIME_WAIT now.
		p := &watchEntry{key: key, state: ev.OldState}
		if err := sw.insert(p); err != nil {
			return err
		}
		sw.pending(p, ev.Time)
	}
	// A listener is watched from a snapshot that finds its accept queue
	// full, not from its LISTEN.
	if sw.states[ev.NewState] && ev.NewState != tcp.Close && ev.NewState != tcp.Listen {
		return sw.insert(&watchEntry{key: key, skaddr: ev.Skaddr, state: ev.NewState, since: ev.Time, exact: true})
	}
	return nil
}

// pending marks e as gone to CLOSE, leaving perhaps a stub.
func (sw *StuckWatch) pending(e *watchEntry, at time.Time) {
	if e.skaddr != 0 && sw.bySk[e.skaddr] == e {
		delete(sw.bySk, e.skaddr)
	}
	e.skaddr = 0
	e.closing, e.closedAt = true, at
}

// fromSnapshot matches one socket of a snapshot taken at start with what
// is known. initial: the first snapshot, with every filter applied.
func (sw *StuckWatch) fromSnapshot(s *snapshot.Socket, start time.Time, initial bool) (*watchEntry, error) {
	key := socketKey(s)
	e := sw.byKey[key]
	if s.State == tcp.Listen && !s.AcceptQueueFull() {
		// A listener is stuck while its accept queue stays full.
		if e != nil && e.state == tcp.Listen && !e.closing {
			return nil, sw.left(e, start, "accepting again")
		}
		return nil, nil
	}
	if e != nil && e.closing {
		if e.state == s.State { // a FIN_WAIT2 stub: still in FIN_WAIT2
			e.closing = false
		} else {
			if err := sw.left(e, e.closedAt, "now "+s.State.String()); err != nil {
				return nil, err
			}
			closedAt := e.closedAt
			e = nil
			if s.State == tcp.TimeWait && sw.states[tcp.TimeWait] {
				e = &watchEntry{key: key, state: tcp.TimeWait, since: closedAt, exact: true}
				if err := sw.insert(e); err != nil {
					return nil, err
				}
			}
		}
	}
	if e != nil && e.state != s.State {
		if e.skaddr != 0 {
			return nil, nil // the tracer's event is on its way
		}
		if err := sw.left(e, start, "now "+s.State.String()); err != nil {
			return nil, err
		}
		e = nil
	}
	if e == nil {
		if !sw.states[s.State] || sw.strict && !initial {
			return nil, nil
		}
		// A socket whose entry the tracer did not see: it has been in
		// its state at least since it was first listed, and at least its
		// estimated age.
		e = &watchEntry{key: key, state: s.State, since: start}
		if err := sw.insert(e); err != nil {
			return nil, err
		}
	}
	if !e.exact {
		if t, ok := s.Since(); ok && t.Before(e.since) {
			e.since = t
		}
	}
	e.sock = *s
	e.sock.Owners = nil
	e.haveSock = true
	e.missed = 0
	return e, nil
}

// refresh takes a snapshot and updates what is known.
func (sw *StuckWatch) refresh() error {
	start := sw.now()
	// Sockets gone to CLOSE may have left a TIME_WAIT stub: look at
	// TIME_WAIT too then.
	states := sw.opts.States
	if !sw.states[tcp.TimeWait] {
		for _, e := range sw.byKey {
			if e.closing {
				states = append(slices.Clone(states), tcp.TimeWait)
				break
			}
		}
	}
	seen := map[*watchEntry]bool{}
	var ferr error
	err := sw.snapshot(states, func(s *snapshot.Socket) error {
		e, err := sw.fromSnapshot(s, start, false)
		if err != nil {
			ferr = err
		}
		if e != nil {
			seen[e] = true
		}
		return err
	})
	sw.lastRefresh = sw.now()
	if err != nil {
		return err
	}
	if ferr != nil {
		return ferr
	}
	var gone []*watchEntry
	for _, e := range sw.byKey {
		if !seen[e] {
			gone = append(gone, e)
		}
	}
	slices.SortFunc(gone, func(a, b *watchEntry) int { return a.since.Compare(b.since) })
	for _, e := range gone {
		switch {
		case e.closing:
			if e.closedAt.Before(start) {
				err = sw.left(e, e.closedAt, "closed")
			}
		case e.skaddr != 0 && e.since.Before(start):
			// The tracer tells when it leaves; unless that event was lost.
			if e.missed++; e.missed >= 3 {
				err = sw.left(e, start, "gone")
			}
		case e.since.Before(start):
			err = sw.left(e, start, "gone")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Tick refreshes every second and reports the sockets that crossed the
// threshold.
func (sw *StuckWatch) Tick() error {
	if sw.now().Sub(sw.lastRefresh) >= refreshInterval {
		if err := sw.refresh(); err != nil {
			return err
		}
	}
	return sw.report()
}

// report prints the sockets that have now been in their state for the
// threshold, with details no older than their entry into the state.
func (sw *StuckWatch) report() error {
	due := sw.due(sw.now())
	if len(due) == 0 {
		return nil
	}
	for _, e := range due {
		// No details since it entered the state, nor a snapshot since.
		if (!e.haveSock || e.sock.Seen.Before(e.since)) && sw.lastRefresh.Before(e.since) {
			if err := sw.refresh(); err != nil {
				return err
			}
			due = sw.due(sw.now())
			break
		}
	}
	var ready []*watchEntry
	var socks []snapshot.Socket
	for _, e := range due {
		if e.haveSock && !e.sock.Seen.Before(e.since) {
			ready = append(ready, e)
			socks = append(socks, e.sock)
		}
	}
	if len(ready) == 0 {
		return nil
	}
	if err := sw.owners(socks); err != nil {
		return err
	}
	now := sw.now()
	for i, e := range ready {
		e.sock.Owners = socks[i].Owners
		e.reported = true
		sw.found++
		if err := sw.out(&StuckReport{Time: now, Event: "stuck", Sock: &e.sock,
			Age: now.Sub(e.since), AgeEstimated: !e.exact}); err != nil {
			return err
		}
	}
	return nil
}

// due lists the entries past the threshold not reported yet, oldest first.
func (sw *StuckWatch) due(now time.Time) []*watchEntry {
	var due []*watchEntry
	for _, e := range sw.byKey {
		if !e.closing && !e.reported && sw.states[e.state] && now.Sub(e.since) >= sw.threshold {
			due = append(due, e)
		}
	}
	slices.SortFunc(due, func(a, b *watchEntry) int { return a.since.Compare(b.since) })
	return due
}
