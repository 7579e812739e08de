// SPDX-License-Identifier: Apache-2.0

package ladder

import (
	"net/netip"
	"time"

	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// Build draws one connection from the transitions of its sockets: a, and
// b for the peer when both ends are on this host (nil when the peer is
// elsewhere: its states are then inferred). The client, which sent the
// first SYN, is drawn on the left when both are known.
func Build(a, b []tracer.Event) Diagram {
	if len(b) > 0 && !isClient(a) && isClient(b) {
		a, b = b, a
	}
	var d Diagram
	views := [2]sockView{observe(a), observe(b)}
	d.Ends[Left] = endpoint(a)
	if len(b) > 0 {
		d.Ends[Right] = endpoint(b)
	} else {
		d.Ends[Right] = inferredPeer(a)
		views[Right] = mirror(&views[Left])
	}
	for s := Left; s <= Right; s++ {
		d.Ends[s].Initial = views[s].initial
		if len(b) > 0 || s == Left {
			d.Ends[s].ISN, d.Ends[s].ISNKnown = views[s].isn, views[s].isnKnown
		}
	}
	if len(b) == 0 {
		d.Ends[Right].ISN, d.Ends[Right].ISNKnown = views[Left].peerISN, views[Left].peerKnown
	}
	if len(a) > 0 {
		d.Family = a[0].Family
		d.Start = a[0].Time
		if len(b) > 0 && b[0].Time.Before(d.Start) && !views[Left].client {
			d.Start = b[0].Time
		}
	}
	d.Open = views[Left].open || (len(b) > 0 && views[Right].open)
	d.TimeWait = d.Open
	for s := Left; s <= Right; s++ {
		if (s == Left || len(b) > 0) && views[s].open && views[s].last != tcp.TimeWait {
			d.TimeWait = false
		}
	}
	d.Rows = merge(views, [2]bool{false, len(b) == 0})
	return d
}

func isClient(evs events) bool {
	return len(evs) > 0 && evs[0].OldState == tcp.Close && evs[0].NewState == tcp.SynSent
}

// endpoint is the local end of a socket's transitions: its last owner.
func endpoint(evs events) Endpoint {
	var e Endpoint
	if len(evs) == 0 {
		return e
	}
	last := evs[len(evs)-1]
	e.Addr = netip.AddrPortFrom(last.LAddr, last.LPort)
	e.NetNS = last.NetNS
	for _, ev := range evs {
		if ev.Pid != 0 {
			e.Pid, e.Comm = ev.Pid, ev.Comm
		}
	}
	return e
}

// inferredPeer is the remote end of a socket's transitions.
func inferredPeer(evs events) Endpoint {
	e := Endpoint{Inferred: true}
	if len(evs) > 0 {
		last := evs[len(evs)-1]
		e.Addr = netip.AddrPortFrom(last.RAddr, last.RPort)
	}
	return e
}

// mirror is what the peer of a socket seen alone must have done: it
// received what the socket sent and sent what it received, in the same
// order, except that in a simultaneous close (the socket went through
// CLOSING) the peer sent its FIN before ours reached it.
func mirror(v *sockView) sockView {
	m := sockView{isn: v.peerISN, peerISN: v.isn, isnKnown: v.isnKnown}
	answered := false
	for _, o := range v.obs {
		if !o.local && !o.sent {
			answered = true
		}
	}
	switch {
	case v.client && !answered:
		m.initial = 0 // nothing came back: the SYN may never have arrived
	case v.client:
		m.initial = tcp.Listen
		for _, o := range v.obs {
			if o.seg == RST && !o.sent && o.enter.Prev == tcp.SynSent {
				m.initial = tcp.Close // refused: no listener
			}
		}
	case v.initial == tcp.Listen:
		m.initial = tcp.Close
	case v.initial != tcp.Close:
		m.initial = tcp.Established // older than the tracer
	}
	for _, o := range v.obs {
		if o.local || (o.seg == SYN && o.sent && !answered) {
			continue
		}
		m.obs = append(m.obs, obs{sent: !o.sent, seg: o.seg, seq: o.seq, ack: o.ack, hasAck: o.hasAck, time: o.time})
	}
	if simultaneous(v.obs) {
		// The peer's FIN (ours received) moves before its receiving ours.
		a, b := -1, -1
		for i, o := range m.obs {
			switch {
			case o.seg == FIN && !o.sent && a < 0:
				a = i
			case o.seg == FIN && o.sent && a >= 0 && b < 0:
				b = i
			}
		}
		if a >= 0 && b > a {
			fin := m.obs[b]
			copy(m.obs[a+1:b+1], m.obs[a:b])
			m.obs[a] = fin
		}
	}
	return m
}

// simultaneous tells whether the socket entered CLOSING: both FINs
// crossed.
func simultaneous(obs []obs) bool {
	for _, o := range obs {
		if o.enter.State == tcp.Closing {
			return true
		}
	}
	return false
}

// merge lays the two sides' observations out as rows: a segment becomes
// an arrow when its sender sends it and takes the receiver's new state
// when the receiver receives it. Each side's order is kept, and a segment
// is never received before it is sent; between those rules, earlier
// times go first.
func merge(views [2]sockView, inferred [2]bool) []Row {
	var rows []Row
	var next [2]int
	var inflight [2][]int // rows of arrows sent by a side, not yet received
	var nxt [2]uint32     // next sequence number of each sender
	var nxtKnown [2]bool
	var sim [2]peerSim
	for s := range sim {
		sim[s].state = views[s].initial
	}
	ready := func(s Side) (int, bool) {
		if next[s] >= len(views[s].obs) {
			return 0, false
		}
		o := views[s].obs[next[s]]
		if o.sent || o.local {
			return 0, true
		}
		for k, r := range inflight[s.other()] {
			if rows[r].Seg == o.seg {
				return k, true
			}
		}
		return 0, false
	}
	for {
		var pick Side
		kl, okl := ready(Left)
		kr, okr := ready(Right)
		switch {
		case okl && okr:
			if views[Right].obs[next[Right]].time.Before(views[Left].obs[next[Left]].time) {
				pick = Right
			}
		case okr:
			pick = Right
		case okl:
		default:
			// Only receptions whose sending was not seen are left (an
			// event lost, or an older connection): draw the earliest
			// from its receiver.
			pick = Left
			if next[Left] >= len(views[Left].obs) ||
				next[Right] < len(views[Right].obs) && views[Right].obs[next[Right]].time.Before(views[Left].obs[next[Left]].time) {
				pick = Right
			}
			if next[pick] >= len(views[pick].obs) {
				return rows
			}
			o := views[pick].obs[next[pick]]
			next[pick]++
			rows = append(rows, Row{Kind: Arrow, Time: o.time, From: pick.other(), Seg: o.seg, Seq: o.seq, Ack: o.ack, HasAck: o.hasAck,
				Note: o.note, Warn: o.warn})
			rows[len(rows)-1].Enter[pick] = o.enter
			continue
		}
		k := kl
		if pick == Right {
			k = kr
		}
		o := views[pick].obs[next[pick]]
		next[pick]++
		ch := o.enter
		if inferred[pick] {
			ch = sim[pick].on(o)
		}
		switch {
		case o.local:
			rows = append(rows, Row{Kind: Local, Time: o.time, From: pick, Note: o.note, Warn: o.warn})
			rows[len(rows)-1].Enter[pick] = ch
		case o.sent:
			if nxtKnown[pick] && int32(o.seq-nxt[pick]) > 0 && o.seg != RST {
				rows = append(rows, Row{Kind: Data, From: pick, Bytes: uint64(o.seq - nxt[pick])})
			}
			switch o.seg {
			case SYN, SYNACK, FIN:
				nxt[pick], nxtKnown[pick] = o.seq+1, true
			case ACK:
				nxt[pick], nxtKnown[pick] = o.seq, true
			}
			inflight[pick] = append(inflight[pick], len(rows))
			rows = append(rows, Row{Kind: Arrow, Time: o.time, From: pick, Seg: o.seg, Seq: o.seq, Ack: o.ack, HasAck: o.hasAck,
				Note: o.note, Warn: o.warn})
			rows[len(rows)-1].Enter[pick] = ch
		default:
			q := &inflight[pick.other()]
			r := (*q)[k]
			*q = append((*q)[:k], (*q)[k+1:]...)
			if answeredSince(rows[r+1:], pick) {
				// The receiver sent segments of its own before this one
				// reached it: drawn where it arrived.
				if !inferred[pick] && (o.seq != rows[r].Seq || o.hasAck && o.ack != rows[r].Ack) {
					// Not as first sent: a retransmission, acknowledging
					// more, as the receiver saw it.
					rows = append(rows, Row{Kind: Arrow, Time: o.time, From: pick.other(), Seg: o.seg, Seq: o.seq, Ack: o.ack,
						HasAck: o.hasAck, Note: "retransmitted: the first was lost"})
				} else {
					row := Row{Kind: Local, Time: o.time, From: pick, Note: "receives the " + o.seg.String() + " sent above: they crossed"}
					if inferred[pick] {
						row.Time = time.Time{} // when is not known
					}
					rows = append(rows, row)
				}
				rows[len(rows)-1].Enter[pick] = ch
				continue
			}
			row := &rows[r]
			row.Enter[pick] = ch
			if !inferred[pick] && o.enter.State != tcp.SynRecv {
				// The time it arrived, when its effect is seen; a server
				// child's SYN_RECV is reported only at the handshake's
				// last ACK, so there the sender's time is better.
				row.Time = o.time
			}
			switch {
			case row.Note == "":
				row.Note, row.Warn = o.note, o.warn
			case row.Note == noteAbortInferred && o.seg == RST && !inferred[pick]:
				row.Note = noteAbort // the peer saw it
			}
		}
	}
}

// answeredSince tells whether side s sent a segment in rows.
func answeredSince(rows []Row, s Side) bool {
	for i := range rows {
		if rows[i].Kind == Arrow && rows[i].From == s {
			return true
		}
	}
	return false
}

// peerSim follows an inferred side through the segments it sends and
// receives, by the state machine of RFC 793.
type peerSim struct {
	state tcp.State
	fin   uint32
}

func (p *peerSim) on(o obs) Change {
	old := p.state
	to := old
	switch {
	case o.seg == RST:
		if old != tcp.Close && old != 0 {
			to = tcp.Close
		}
	case o.sent && o.seg == SYN:
		to = tcp.SynSent
	case o.sent && o.seg == FIN:
		p.fin = o.seq
		switch old {
		case tcp.Established:
			to = tcp.FinWait1
		case tcp.CloseWait:
			to = tcp.LastAck
		}
	case o.sent:
	case o.seg == SYN && old == tcp.Listen:
		to = tcp.SynRecv
	case o.seg == SYNACK && old == tcp.SynSent:
		to = tcp.Established
	case o.seg == ACK:
		acksFin := o.ack == p.fin+1
		switch {
		case old == tcp.SynRecv:
			to = tcp.Established
		case old == tcp.FinWait1 && acksFin:
			to = tcp.FinWait2
		case old == tcp.Closing && acksFin:
			to = tcp.TimeWait
		case old == tcp.LastAck && acksFin:
			to = tcp.Close
		}
	case o.seg == FIN:
		switch old {
		case tcp.Established:
			to = tcp.CloseWait
		case tcp.FinWait1:
			to = tcp.Closing
			if o.ack == p.fin+1 {
				to = tcp.TimeWait
			}
		case tcp.FinWait2:
			to = tcp.TimeWait
		}
	}
	if to == old {
		return Change{}
	}
	p.state = to
	return Change{State: to, Prev: old, Inferred: true}
}

// since is t - start, or 0 for a zero t.
func since(t, start time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return t.Sub(start)
}
