// SPDX-License-Identifier: Apache-2.0

// Package conn is the connection model: it follows each TCP connection
// through the tracer's transitions (and, for stuck sockets, the kernel's
// snapshots) and says what it was, or is: one record per connection when
// it ends (LifeTracker).
package conn

import (
	"net/netip"
	"time"

	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// Connection is the whole life of one TCP connection, reported when its
// full socket ends: at CLOSE, or on entering TIME_WAIT.
type Connection struct {
	Time     time.Time // of the last transition
	Pid      uint32
	Comm     string
	Family   tcp.Family
	LAddr    netip.Addr
	LPort    uint16
	RAddr    netip.Addr
	RPort    uint16
	Start    time.Time // first transition seen (or estimated, see Partial)
	Duration time.Duration
	// Path lists every state the connection passed through with the time
	// spent in it; the last one (TIME_WAIT or CLOSE) has 0.
	Path []Step
	// Partial is set for connections older than the tracer: the path
	// starts at the first state seen.
	Partial          bool
	TxBytes, RxBytes uint64 // payload acknowledged by the peer / received
	Retrans          uint32
	ClosedBy         string // "local", "remote", "simultaneous"; "" if no FIN
	HalfClose        bool   // payload flowed after the first FIN
	Reset            tracer.Reset
	// ResetReason is the kernel's reason for the RST this host sent
	// (Linux 6.10 and later).
	ResetReason tracer.ResetReason
	// Error is the error the connection ended on, as its application saw
	// it (ECONNRESET, ETIMEDOUT...); 0 for none.
	Error        tracer.Errno
	ISN, PeerISN uint32
	ISNKnown     bool
	NetNS        uint32
	CgroupID     uint64
}

// Step is one state of a connection's path.
type Step struct {
	State    tcp.State
	Duration time.Duration
}

// LifeHandler receives connections from a LifeTracker.
type LifeHandler interface {
	// Connection is called for every connection that ended; c (and its
	// Path) is reused afterwards.
	Connection(c *Connection) error
	Tick() error
}

// maxFree bounds the lives kept for reuse.
const maxFree = 4096

// maxOpen bounds the connections followed at once; a host with more open
// connections than this gets the oldest forgotten (and not reported).
const maxOpen = 1 << 17

// LifeTracker turns transitions into one Connection per connection. It is
// a Handler: pass it to Tracer.Run. Its cost is a map operation per
// transition; it prints nothing until a connection ends.
type LifeTracker struct {
	out  LifeHandler
	open map[uint64]*life // by tracer.Event.ConnID
	// ended and then ending wait for the RST the kernel sends after
	// CLOSE: a connection is reported at the second tick after its end,
	// at least a tick period later, since the RST's note may come just
	// after a tick.
	ended, ending []*life
	// free are reported lives to follow new connections with: a busy
	// host starts many, and allocating each made work for the GC.
	free []*life
	// Dropped counts connections forgotten because too many were open.
	Dropped uint64
}

// life is a connection being followed.
type life struct {
	c        Connection
	id       uint64 // tracer.Event.ConnID
	listener bool
	// At the first FIN, to tell half-closes.
	finDir       int // 0 none yet, 1 local first, 2 remote first
	finRx        uint64
	finSndNxt    uint32
	lastPathTime time.Time
	orphan       bool // lives on as a FIN_WAIT2 timewait socket
	// steps hold the path of most connections (c.Path), so that
	// following one allocates only its life.
	steps [8]Step
}

// NewLifeTracker returns a tracker reporting to out.
func NewLifeTracker(out LifeHandler) *LifeTracker {
	return &LifeTracker{out: out, open: make(map[uint64]*life)}
}

// Event follows one transition, or a connection's whole path
// (tracer.Options.Life).
func (lt *LifeTracker) Event(ev *tracer.Event) error {
	if ev.Path != nil {
		return lt.path(ev)
	}
	key := ev.ConnID() // an orphan's later events share its cookie
	if ev.OldState == tcp.TimeWait {
		return nil // the connection was reported when it entered TIME_WAIT
	}
	l := lt.open[key]
	if l == nil && ev.Synthesized && ev.OldState == tcp.FinWait2 && ev.NewState == tcp.Close {
		return nil // an orphan we did not see start
	}
	if l != nil && (ev.OldState == tcp.Close || (ev.OldState == tcp.Listen && ev.NewState == tcp.SynRecv)) {
		// The address was reused for a new socket: the old one is gone.
		delete(lt.open, key)
		l = nil
	}
	if l == nil {
		if len(lt.open) >= maxOpen {
			lt.evictOne()
		}
		l = lt.start(ev)
		lt.open[key] = l
	}
	l.step(ev)
	if ev.NewState == tcp.TimeWait || ev.NewState == tcp.Close {
		delete(lt.open, key)
		if !l.listener {
			lt.ended = append(lt.ended, l)
		}
	}
	return nil
}

// path follows a connection the kernel sent whole: each step as the
// transition it was, with the counters the model reads there (at the
// handshake and the first FIN) as the kernel kept them, and the record's
// own, those of the connection's end, elsewhere.
func (lt *LifeTracker) path(ev *tracer.Event) error {
	p := ev.Path
	step := *ev
	step.Path = nil
	old := p.From
	for i, s := range p.Steps {
		step.OldState, step.NewState, step.Time = old, s.State, s.Time
		step.InStateKnown = i > 0
		step.InState = 0
		if i > 0 {
			step.InState = s.Time.Sub(p.Steps[i-1].Time)
		}
		step.Synthesized = ev.Synthesized && i == len(p.Steps)-1
		step.SndUna, step.SndNxt, step.RcvNxt, step.RxBytes = ev.SndUna, ev.SndNxt, ev.RcvNxt, ev.RxBytes
		switch {
		case s.State == tcp.Established && (old == tcp.SynSent || old == tcp.SynRecv) && p.HandshakeSeen:
			step.SndUna, step.RcvNxt = p.SndUna, p.RcvNxt
		case s.State == tcp.FinWait1:
			step.RxBytes = p.FinRx
		case s.State == tcp.CloseWait:
			step.SndNxt = p.FinSndNxt
		}
		if err := lt.Event(&step); err != nil {
			return err
		}
		old = s.State
	}
	if l, ok := lt.open[ev.ConnID()]; ok && p.Orphan {
		l.orphan = true
	}
	return nil
}

// Note marks orphans and adds late resets (tracer.Noter).
func (lt *LifeTracker) Note(ev *tracer.Event) error {
	if ev.Note == tracer.NoteOrphan {
		if l, ok := lt.open[ev.ConnID()]; ok {
			l.orphan = true
		}
		return nil
	}
	for _, ls := range [...][]*life{lt.ending, lt.ended} {
		for _, l := range ls {
			if l.id == ev.ConnID() {
				l.c.Reset |= ev.Reset
				if ev.Reset&tracer.ResetSent != 0 {
					l.c.ResetReason = ev.ResetReason
				}
			}
		}
	}
	return nil
}

// Tick reports the connections that ended before the last tick.
func (lt *LifeTracker) Tick() error {
	var err error
	if lt.ending, err = lt.report(lt.ending); err != nil {
		return err
	}
	lt.ending, lt.ended = lt.ended, lt.ending
	return lt.out.Tick()
}

// Flush reports every connection that ended, without waiting longer for
// a late RST: at the end of a session.
func (lt *LifeTracker) Flush() error {
	var err error
	if lt.ending, err = lt.report(lt.ending); err != nil {
		return err
	}
	if lt.ended, err = lt.report(lt.ended); err != nil {
		return err
	}
	return lt.out.Tick()
}

// report hands ls to the LifeHandler and keeps the lives for reuse; it
// returns ls emptied, or what is left of it after an error.
func (lt *LifeTracker) report(ls []*life) ([]*life, error) {
	for i, l := range ls {
		if err := lt.out.Connection(&l.c); err != nil {
			return ls[i+1:], err
		}
	}
	for _, l := range ls {
		if len(lt.free) < maxFree {
			*l = life{}
			lt.free = append(lt.free, l)
		}
	}
	clear(ls)
	return ls[:0], nil
}

func (lt *LifeTracker) evictOne() {
	for k := range lt.open {
		delete(lt.open, k)
		lt.Dropped++
		return
	}
}

func (lt *LifeTracker) start(ev *tracer.Event) *life {
	var l *life
	if n := len(lt.free); n > 0 {
		l, lt.free = lt.free[n-1], lt.free[:n-1]
	} else {
		l = &life{}
	}
	l.id = ev.ConnID()
	l.c.Path = l.steps[:0]
	l.c.Start = ev.Time
	if ev.OldState != tcp.Close && !(ev.OldState == tcp.Listen && ev.NewState == tcp.SynRecv) {
		// Older than the tracer: the path starts where we came in.
		l.c.Partial = true
		if ev.InStateKnown {
			l.c.Start = ev.Time.Add(-ev.InState)
		}
		l.c.Path = append(l.c.Path, Step{State: ev.OldState})
	}
	l.lastPathTime = l.c.Start
	return l
}

// step adds one transition to the path and the counters.
func (l *life) step(ev *tracer.Event) {
	c := &l.c
	if ev.NewState == tcp.Listen || ev.OldState == tcp.Listen && ev.NewState == tcp.Close {
		l.listener = true
	}
	if n := len(c.Path); n > 0 {
		c.Path[n-1].Duration = ev.Time.Sub(l.lastPathTime)
	}
	l.lastPathTime = ev.Time
	c.Path = append(c.Path, Step{State: ev.NewState})
	c.Time = ev.Time
	c.Duration = ev.Time.Sub(c.Start)
	if ev.Pid != 0 {
		c.Pid, c.Comm = ev.Pid, ev.Comm
	}
	c.Family, c.LAddr, c.LPort, c.RAddr, c.RPort = ev.Family, ev.LAddr, ev.LPort, ev.RAddr, ev.RPort
	c.NetNS, c.CgroupID = ev.NetNS, ev.CgroupID
	c.Reset |= ev.Reset
	if ev.Reset&tracer.ResetSent != 0 {
		c.ResetReason = ev.ResetReason
	}
	if ev.NewState == tcp.Close {
		c.Error = ev.Error
	}
	// Timewait events carry the counters of the full socket's end.
	c.TxBytes, c.RxBytes, c.Retrans = ev.TxBytes, ev.RxBytes, ev.Retrans
	if ev.NewState == tcp.TimeWait || ev.NewState == tcp.Close {
		c.TxBytes, c.RxBytes = l.payload(ev)
	}
	if ev.NewState == tcp.Established && (ev.OldState == tcp.SynSent || ev.OldState == tcp.SynRecv) {
		c.ISN, c.PeerISN, c.ISNKnown = ev.SndUna-1, ev.RcvNxt-1, true
	}
	switch {
	case ev.NewState == tcp.Closing:
		c.ClosedBy = "simultaneous"
	case l.finDir == 0 && ev.NewState == tcp.FinWait1:
		l.finDir, l.finRx = 1, ev.RxBytes
		c.ClosedBy = "local"
	case l.finDir == 0 && ev.NewState == tcp.CloseWait:
		l.finDir, l.finSndNxt = 2, ev.SndNxt
		c.ClosedBy = "remote"
	}
	if ev.NewState == tcp.TimeWait || ev.NewState == tcp.Close {
		switch l.finDir {
		case 1: // the peer may have gone on sending
			c.HalfClose = c.RxBytes > l.finRx
		case 2: // we may have gone on sending; our FIN takes one number
			sent := ev.SndNxt - l.finSndNxt
			if pathHas(c.Path, tcp.LastAck) {
				sent--
			}
			c.HalfClose = int32(sent) > 0
		}
	}
}

// payload turns the kernel's byte counters into payload bytes. bytes_acked
// counts every acknowledged sequence number, so also our SYN (active open)
// and our FIN; bytes_received counts the peer's FIN when the full socket
// processed it (not when an orphan's timewait socket did).
func (l *life) payload(ev *tracer.Event) (tx, rx uint64) {
	p := l.c.Path
	tx, rx = ev.TxBytes, ev.RxBytes
	if len(p) > 0 && p[0].State == tcp.SynSent && pathHas(p, tcp.Established) {
		tx--
	}
	ourFinAcked := pathHas(p, tcp.FinWait2) || (pathHas(p, tcp.TimeWait) && (pathHas(p, tcp.FinWait1) || pathHas(p, tcp.Closing))) ||
		(pathHas(p, tcp.LastAck) && ev.OldState == tcp.LastAck && ev.Reset&tracer.ResetReceived == 0)
	if ourFinAcked {
		tx--
	}
	peerFin := pathHas(p, tcp.CloseWait) || pathHas(p, tcp.Closing) || (ev.NewState == tcp.TimeWait && !l.orphan)
	if peerFin {
		rx--
	}
	return min(tx, ev.TxBytes), min(rx, ev.RxBytes) // never wrap below 0
}

func pathHas(p []Step, s tcp.State) bool {
	for _, st := range p {
		if st.State == s {
			return true
		}
	}
	return false
}
