// SPDX-License-Identifier: Apache-2.0

package ladder

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// Output receives what a Tracker draws.
type Output interface {
	// Diagram is called once per connection, when its sockets are all
	// closed or in TIME_WAIT: the end of a TIME_WAIT, 60 s later, is not
	// waited for (Diagram.TimeWait says it was still running).
	Diagram(d *Diagram) error
	// Follow is called, with Options.Follow, whenever a connection has
	// rows to print: new ones, or states a printed row gained since
	// (first: the first time for d). Diagram is still called when the
	// connection ends.
	Follow(d *Diagram, rows []Row, first bool) error
}

// Options change what a Tracker follows.
type Options struct {
	// Filter selects connections in user space: one is drawn if one of
	// its sockets matches every field set (an owner, a port, an
	// address, a state it passed through). NetNS and CgroupID are left
	// to the tracer.
	Filter tcp.Filter
	// Follow draws rows as they happen instead of whole diagrams.
	Follow bool
	// MaxConns bounds the connections followed at once (default
	// DefaultMaxConns).
	MaxConns int
}

// DefaultMaxConns bounds the connections a Tracker follows at once: about
// 4 KiB each, so 16 MiB.
const DefaultMaxConns = 4096

// maxEvents bounds the transitions kept per socket; a TCP socket makes
// about 6, a hostile --from file could make any number.
const maxEvents = 32

// Tracker groups transitions into connections, pairs the two sockets of a
// connection whose both ends are on this host, and draws each connection.
// It is a tracer Handler (and Noter); not safe for concurrent use.
type Tracker struct {
	out      Output
	opt      Options
	sel      selector
	socks    map[uint64]*sock    // by tracer.Event.ConnID, until drawn
	unpaired map[tupleKey]*sock  // sockets whose peer may still come
	ended    []*conn             // ended since the last Tick
	waiting  []*conn             // ended before it: drawn at the next
	conns    int                 // connections followed now, not ended
	num      int                 // connections numbered so far (Follow)
	notes    map[uint64]*sock    // ended sockets a late RST may still come for
	dropped  map[uint64]tupleKey // sockets not followed, until they close or enter TIME_WAIT
	// droppedKeys are the 4-tuples of connections not followed whose
	// peer socket, if it is on this host, has not come yet: it is the
	// same connection, not followed and not counted again.
	droppedKeys map[tupleKey]struct{}
	// Dropped counts connections not followed because MaxConns were.
	Dropped uint64
	events  uint64 // events given
}

type sock struct {
	id      uint64
	evs     events
	conn    *conn
	key     tupleKey
	done    bool
	partial bool
}

type conn struct {
	socks    [2]*sock
	num      int
	printed  map[rowKey][2]Change // --follow: rows printed, with their states
	begun    bool
	selected bool
	drawn    bool
}

// tupleKey is a socket's 4-tuple; the network namespace counts only for
// loopback addresses, which mean a different host in each namespace.
type tupleKey struct {
	l, r  netip.AddrPort
	netns uint32
}

func keyOf(ev *tracer.Event) tupleKey {
	k := tupleKey{l: netip.AddrPortFrom(ev.LAddr, ev.LPort), r: netip.AddrPortFrom(ev.RAddr, ev.RPort)}
	if ev.LAddr.IsLoopback() || ev.RAddr.IsLoopback() {
		k.netns = ev.NetNS
	}
	return k
}

func (k tupleKey) reversed() tupleKey { return tupleKey{l: k.r, r: k.l, netns: k.netns} }

// NewTracker returns a Tracker drawing to out.
func NewTracker(out Output, o Options) *Tracker {
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	return &Tracker{out: out, opt: o, sel: newSelector(o.Filter),
		socks: map[uint64]*sock{}, unpaired: map[tupleKey]*sock{}, notes: map[uint64]*sock{},
		dropped: map[uint64]tupleKey{}, droppedKeys: map[tupleKey]struct{}{}}
}

// Event follows one transition.
func (t *Tracker) Event(ev *tracer.Event) error {
	t.events++
	if ev.NewState == tcp.Listen || ev.OldState == tcp.Listen && ev.NewState == tcp.Close {
		return nil // a listener is no connection
	}
	id := ev.ConnID()
	s := t.socks[id]
	fresh := ev.OldState == tcp.Close || ev.OldState == tcp.Listen && ev.NewState == tcp.SynRecv
	if s != nil && fresh {
		// No cookie and the address reused: the old socket is gone.
		t.end(s)
		s = nil
	}
	if s == nil {
		if k, ok := t.dropped[id]; ok {
			if ev.NewState == tcp.Close || ev.NewState == tcp.TimeWait {
				delete(t.dropped, id)
				delete(t.droppedKeys, k)
			}
			return nil // not followed from its start: not at all
		}
		if ev.OldState == tcp.TimeWait || ev.Synthesized && ev.NewState == tcp.Close {
			return nil // the end of a connection not seen before
		}
		if s = t.start(ev, !fresh); s == nil {
			return nil
		}
	}
	if len(s.evs) < maxEvents {
		s.evs = append(s.evs, *ev)
	}
	switch ev.NewState {
	case tcp.Close:
		t.end(s)
	case tcp.TimeWait:
		t.finish(s.conn)
	}
	if t.opt.Follow {
		return t.follow(s.conn)
	}
	return nil
}

// Note adds the RST the kernel sends just after an abortive close's CLOSE
// (tracer.Noter).
func (t *Tracker) Note(ev *tracer.Event) error {
	if ev.Note != tracer.NoteLateReset {
		return nil
	}
	if s := t.notes[ev.ConnID()]; s != nil && len(s.evs) > 0 {
		s.evs[len(s.evs)-1].Reset |= ev.Reset
		if t.opt.Follow {
			return t.follow(s.conn)
		}
	}
	return nil
}

// start follows a new socket, paired with its peer if that is on this
// host; nil when too many connections are followed.
func (t *Tracker) start(ev *tracer.Event, partial bool) *sock {
	s := &sock{id: ev.ConnID(), key: keyOf(ev), partial: partial}
	if p := t.unpaired[s.key.reversed()]; p != nil && pairs(p, s, ev) {
		delete(t.unpaired, p.key)
		p.conn.socks[1] = s
		s.conn = p.conn
		t.socks[s.id] = s
		return s
	}
	if t.conns >= t.opt.MaxConns {
		t.drop(s)
		return nil
	}
	t.conns++
	t.num++
	s.conn = &conn{socks: [2]*sock{s}, num: t.num}
	t.socks[s.id] = s
	t.unpaired[s.key] = s
	return s
}

// pairs tells whether s, whose first transition is ev, is the peer of p:
// a client and a server child, or two connections older than the tracer,
// with p still open.
func pairs(p, s *sock, ev *tracer.Event) bool {
	if p.done || p.conn.socks[1] != nil || len(p.evs) == 0 {
		return false
	}
	first := p.evs[0]
	pClient := first.OldState == tcp.Close
	pChild := first.OldState == tcp.Listen
	switch {
	case ev.OldState == tcp.Close:
		return pChild
	case ev.OldState == tcp.Listen:
		return pClient
	}
	return p.partial && s.partial
}

// drop leaves s unfollowed, and counts its connection unless s is the
// peer of a socket already left so.
func (t *Tracker) drop(s *sock) {
	if _, ok := t.droppedKeys[s.key.reversed()]; ok {
		delete(t.droppedKeys, s.key.reversed())
	} else {
		t.Dropped++
		if len(t.droppedKeys) >= t.opt.MaxConns {
			clear(t.droppedKeys) // bounded: a forgotten one's peer is counted again
		}
		t.droppedKeys[s.key] = struct{}{}
	}
	if len(t.dropped) >= 2*t.opt.MaxConns {
		clear(t.dropped) // bounded too; the forgotten may show up partial
	}
	t.dropped[s.id] = s.key
}

// end marks s closed, and its connection ended when its peer is too.
func (t *Tracker) end(s *sock) {
	if s.done {
		return
	}
	s.done = true
	delete(t.socks, s.id)
	t.notes[s.id] = s
	if t.unpaired[s.key] == s {
		delete(t.unpaired, s.key)
	}
	t.finish(s.conn)
}

// finish ends c when its sockets have all closed or are in TIME_WAIT:
// it is drawn at the second Tick from now, with what came until then,
// and no longer counts as followed.
func (t *Tracker) finish(c *conn) {
	if c.drawn || !c.lingering() {
		return
	}
	c.drawn = true
	t.conns--
	t.ended = append(t.ended, c)
}

// lingering tells whether every socket of c has closed or is in
// TIME_WAIT, which ends by itself 60 s later.
func (c *conn) lingering() bool {
	for _, s := range c.socks {
		if s != nil && !s.done && (len(s.evs) == 0 || s.evs[len(s.evs)-1].NewState != tcp.TimeWait) {
			return false
		}
	}
	return true
}

func (c *conn) build() Diagram {
	var b events
	if c.socks[1] != nil {
		b = c.socks[1].evs
	}
	d := Build(c.socks[0].evs, b)
	d.Num = c.num
	return d
}

func (t *Tracker) matches(c *conn) bool {
	if !c.selected {
		c.selected = t.sel.match(c)
	}
	return c.selected
}

func (t *Tracker) follow(c *conn) error {
	if !t.matches(c) {
		return nil
	}
	d := c.build()
	// Rows change as transitions come (a peer's states join, a FIN's
	// number is refined): print the rows not printed yet, and for a row
	// printed before, the states it gained since, on a line of their own.
	if c.printed == nil {
		c.printed = map[rowKey][2]Change{}
	}
	var rows []Row
	for _, r := range d.Rows {
		k := rowKey{r.Kind, r.From, r.Seg, r.Seq, r.Ack, r.Bytes}
		was, ok := c.printed[k]
		switch {
		case !ok:
			rows = append(rows, r)
		default:
			s := Row{Kind: Local, Time: r.Time, From: r.From}
			gained := false
			for i := range r.Enter {
				if st := r.Enter[i].State; st != 0 && st != was[i].State {
					s.Enter[i], gained = r.Enter[i], true
				}
			}
			if !gained {
				continue
			}
			rows = append(rows, s)
		}
		c.printed[k] = r.Enter
	}
	if len(rows) == 0 {
		return nil
	}
	first := !c.begun
	c.begun = true
	return t.out.Follow(&d, rows, first)
}

// rowKey identifies a row across rebuilds of a diagram.
type rowKey struct {
	kind     RowKind
	from     Side
	seg      Segment
	seq, ack uint32
	bytes    uint64
}

// Tick draws the connections that ended before the last tick: the RST
// of an abortive close comes just after its CLOSE, as a note.
func (t *Tracker) Tick() error {
	ready := t.waiting
	t.waiting, t.ended = t.ended, nil
	return t.draw(ready)
}

func (t *Tracker) draw(ready []*conn) error {
	for i, c := range ready {
		for _, s := range c.socks {
			if s != nil {
				delete(t.notes, s.id)
				if !s.done {
					// In TIME_WAIT: its end is not waited for.
					s.done = true
					delete(t.socks, s.id)
				}
			}
		}
		if !t.matches(c) {
			continue
		}
		d := c.build()
		if err := t.out.Diagram(&d); err != nil {
			t.waiting = slices.Concat(ready[i+1:], t.waiting)
			return err
		}
	}
	return nil
}

// NothingDrawn says why a Tracker drew nothing, given how many selected
// connections Flush found still open.
func (t *Tracker) NothingDrawn(open int) string {
	switch {
	case t.events == 0:
		return "no tcpstate event"
	case t.num == 0:
		return fmt.Sprintf("%s, but no connection (listening sockets, or ends of connections that began before)", plural(t.events, "event"))
	case open > 0:
		return fmt.Sprintf("%s selected, not ended when the events did (still open: not drawn)", plural(uint64(open), "connection"))
	case t.num == 1:
		return "the only connection does not match the filters"
	}
	return fmt.Sprintf("none of the %d connections matches the filters", t.num)
}

// Summary is what a run says at its end, in connections: drawn, more
// selected but not drawn (past a limit of one: -o svg), still open (not
// drawn), not followed.
func (t *Tracker) Summary(drawn, more, open int) string {
	s := plural(uint64(drawn), "connection") + " drawn"
	if more > 0 {
		s += fmt.Sprintf(", %d more selected (one picture: select it with the filters)", more)
	}
	if open > 0 {
		s += fmt.Sprintf(", %d still open not drawn", open)
	}
	if t.Dropped > 0 {
		s += fmt.Sprintf(", %d not followed (more than %d open at once)", t.Dropped, t.opt.MaxConns)
	}
	return s
}

// plural is "1 event", "2 events".
func plural(n uint64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.FormatUint(n, 10) + " " + noun + "s"
}

// Flush draws, at the end, the connections that ended since the last
// Ticks, and returns how many selected ones were still open (not drawn).
func (t *Tracker) Flush() (open int, err error) {
	ready := slices.Concat(t.waiting, t.ended)
	t.waiting, t.ended = nil, nil
	seen := map[*conn]bool{}
	for _, s := range t.socks {
		c := s.conn
		if seen[c] || c.drawn {
			continue
		}
		seen[c] = true
		if t.matches(c) {
			open++
		}
	}
	clear(t.socks)
	return open, t.draw(ready)
}
