// SPDX-License-Identifier: Apache-2.0

package ladder

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// obs is a segment, or a local transition, as one socket's transitions
// imply it: sent or received by that socket.
type obs struct {
	local  bool // a transition that sends and receives nothing
	sent   bool
	seg    Segment
	seq    uint32
	ack    uint32
	hasAck bool
	time   time.Time
	enter  Change // the state this socket entered with it
	note   string
	warn   bool
}

// sockView is what one socket's transitions say.
type sockView struct {
	obs      []obs
	initial  tcp.State
	isn      uint32
	peerISN  uint32
	isnKnown bool
	// peerKnown: the handshake was seen, so peerISN is known too.
	peerKnown bool
	client    bool // it sent the first SYN
	open      bool // its last transition did not end it
	last      tcp.State
}

// observe derives the segments one socket sent and received from its
// transitions. The kernel's sequence numbers at each transition give
// their seq and ack: SndUna-1 is our ISN and RcvNxt-1 the peer's once
// the handshake is done; at CLOSE_WAIT RcvNxt-1 is the peer's FIN; our
// FIN is SndNxt-1 at the first transition after it was sent.
func observe(evs events) sockView {
	var v sockView
	if len(evs) == 0 {
		return v
	}
	v.initial = evs[0].OldState
	v.client = evs[0].OldState == tcp.Close && evs[0].NewState == tcp.SynSent
	for _, ev := range evs {
		if ev.OldState == tcp.SynSent && ev.NewState == tcp.Close && !v.isnKnown {
			// The SYN was never acknowledged: snd_una is still the ISN.
			v.isn, v.isnKnown = ev.SndUna, true
		}
		if ev.NewState == tcp.Established && (ev.OldState == tcp.SynSent || ev.OldState == tcp.SynRecv) {
			v.isn, v.peerISN, v.isnKnown, v.peerKnown = ev.SndUna-1, ev.RcvNxt-1, true, true
		}
	}
	if !v.isnKnown {
		// Not past the handshake yet (--follow): what the first event
		// holds. At connect() return snd_una is the ISN, or ISN+1 if the
		// SYN+ACK came first (snd_nxt tells); a server child's numbers
		// are set when it is created.
		switch first := evs[0]; {
		case v.client:
			v.isn = first.SndUna
			if first.SndUna == first.SndNxt {
				v.isn--
			}
		case first.OldState == tcp.Listen:
			v.isn, v.peerISN = first.SndUna-1, first.RcvNxt-1
		}
	}
	last := evs[len(evs)-1]
	v.open, v.last = last.NewState != tcp.Close, last.NewState
	for i := range evs {
		v.obs = append(v.obs, v.transition(evs, i)...)
	}
	return v
}

// change is the state ev entered, as a Change.
func change(ev *tracer.Event) Change {
	return Change{State: ev.NewState, Prev: ev.OldState, InPrev: ev.InState, InPrevKnown: ev.InStateKnown}
}

// finSeq is the sequence number of the FIN sent at evs[i] (entering
// FIN_WAIT1 or LAST_ACK). The tracepoint fires just before the FIN is
// queued, so SndNxt is the FIN's number unless data is still queued
// before it; at the next transition SndNxt-1 is, once the FIN went out.
// The larger of the two is exact in both cases.
func finSeq(evs events, i int) uint32 {
	seq := evs[i].SndNxt
	if i+1 < len(evs) && evs[i+1].OldState == evs[i].NewState {
		if next := evs[i+1].SndNxt - 1; int32(next-seq) > 0 {
			seq = next
		}
	}
	return seq
}

func (v *sockView) transition(evs events, i int) []obs {
	ev := &evs[i]
	t := ev.Time
	enter := change(ev)
	recv := func(seg Segment, seq, ack uint32, hasAck bool) obs {
		return obs{seg: seg, seq: seq, ack: ack, hasAck: hasAck, time: t, enter: enter}
	}
	send := func(seg Segment, seq, ack uint32, hasAck bool) obs {
		return obs{sent: true, seg: seg, seq: seq, ack: ack, hasAck: hasAck, time: t}
	}
	local := func(note string, warn bool) []obs {
		return []obs{{local: true, time: t, enter: enter, note: note, warn: warn}}
	}
	resetIn := ev.Reset&tracer.ResetReceived != 0
	switch old, new := ev.OldState, ev.NewState; {
	case old == tcp.Close && new == tcp.SynSent:
		s := send(SYN, v.isn, 0, false)
		s.enter = enter
		if n := synRetrans(evs, i); n > 0 {
			s.note, s.warn = fmt.Sprintf("SYN retransmitted %d times", n), true
		}
		return []obs{s}
	case old == tcp.Listen && new == tcp.SynRecv:
		r := recv(SYN, v.peerISN, 0, false)
		return []obs{r, send(SYNACK, v.isn, v.peerISN+1, true)}
	case old == tcp.SynSent && new == tcp.Established:
		return []obs{recv(SYNACK, ev.RcvNxt-1, ev.SndUna, true), send(ACK, ev.SndUna, ev.RcvNxt, true)}
	case old == tcp.SynSent && new == tcp.Close:
		if resetIn {
			r := recv(RST, 0, v.isn+1, true)
			r.note, r.warn = "connection refused", true
			return []obs{r}
		}
		if n := ev.Retrans; n > 0 {
			return local(fmt.Sprintf("no answer: connect timed out after %s, SYN retransmitted %d times", human(ev.InState), n), true)
		}
		return local("connect abandoned before an answer", true)
	case old == tcp.SynRecv && new == tcp.Established:
		return []obs{recv(ACK, ev.RcvNxt, ev.SndUna, true)}
	case old == tcp.Established && new == tcp.FinWait1, old == tcp.CloseWait && new == tcp.LastAck:
		s := send(FIN, finSeq(evs, i), ev.RcvNxt, true)
		s.enter = enter
		if old == tcp.CloseWait && ev.InStateKnown && ev.InState >= longCloseWait {
			s.note, s.warn = fmt.Sprintf("close() %s after the peer's FIN", human(ev.InState)), true
		}
		return []obs{s}
	case old == tcp.Established && new == tcp.CloseWait:
		return []obs{recv(FIN, ev.RcvNxt-1, ev.SndNxt, true), send(ACK, ev.SndNxt, ev.RcvNxt, true)}
	case old == tcp.FinWait1 && new == tcp.FinWait2, old == tcp.Closing && new == tcp.TimeWait:
		return []obs{recv(ACK, ev.RcvNxt, ev.SndUna, true)}
	case old == tcp.FinWait1 && (new == tcp.Closing || new == tcp.TimeWait):
		ack := ev.SndUna // CLOSING: our FIN is not acknowledged yet
		if new == tcp.TimeWait {
			ack = ev.SndNxt
		}
		return []obs{recv(FIN, ev.RcvNxt-1, ack, true), send(ACK, ev.SndNxt, ev.RcvNxt, true)}
	case old == tcp.FinWait2 && new == tcp.TimeWait:
		fin := ev.RcvNxt - 1
		if i > 0 && evs[i-1].NewState == tcp.FinWait2 && evs[i-1].RcvNxt == ev.RcvNxt {
			// An orphan (closed in FIN_WAIT2): its timewait socket took
			// the FIN, and the numbers are those of the close().
			fin = ev.RcvNxt
		}
		return []obs{recv(FIN, fin, ev.SndNxt, true), send(ACK, ev.SndNxt, fin+1, true)}
	case old == tcp.TimeWait && new == tcp.Close:
		note, warn := "TIME_WAIT over (2MSL)", false
		if ev.InStateKnown {
			note = fmt.Sprintf("TIME_WAIT over after %s", human(ev.InState))
			switch {
			case ev.InState < timeWaitLen-timeWaitSlack:
				note, warn = fmt.Sprintf("TIME_WAIT cut short after %s (4-tuple reused, or a RST)", human(ev.InState)), true
			case ev.InState > timeWaitLen+timeWaitSlack:
				note, warn = fmt.Sprintf("TIME_WAIT lasted %s (restarted by a retransmitted FIN)", human(ev.InState)), true
			}
		}
		return local(note, warn)
	case new == tcp.Close && resetIn:
		r := recv(RST, ev.RcvNxt, 0, false)
		r.note, r.warn = "reset by the peer", true
		return []obs{r}
	case old == tcp.LastAck && new == tcp.Close:
		return []obs{recv(ACK, ev.RcvNxt, ev.SndUna, true)}
	case old == tcp.FinWait2 && new == tcp.Close && ev.Synthesized:
		return local("orphan FIN_WAIT2 timed out (tcp_fin_timeout): no FIN from the peer", true)
	case old == tcp.FinWait2 && new == tcp.Close && i > 0 && ev.RcvNxt != evs[i-1].RcvNxt:
		// TIME_WAIT not followed (classic tracepoints): the FIN came.
		return []obs{recv(FIN, ev.RcvNxt-1, ev.SndNxt, true), send(ACK, ev.SndNxt, ev.RcvNxt, true)}
	case new == tcp.Close && (old == tcp.Established || old == tcp.CloseWait || old == tcp.FinWait1 ||
		old == tcp.FinWait2 || old == tcp.SynRecv || old == tcp.Closing || old == tcp.LastAck):
		// An abortive close (SO_LINGER 0, unread data): the kernel
		// sends a RST just after CLOSE.
		s := send(RST, ev.SndNxt, ev.RcvNxt, true)
		s.enter = enter
		s.note, s.warn = noteAbort, true
		if ev.Reset&tracer.ResetSent == 0 {
			// Live, the tracer notes the RST; a recording has no notes.
			s.note = noteAbortInferred
		}
		return []obs{s}
	}
	return local("", false)
}

// Notes of an abortive close: the RST seen sent (live) or received by
// the peer, or only inferred from a CLOSE without a FIN.
const (
	noteAbort         = "reset: abortive close"
	noteAbortInferred = "closed without a FIN: abortive close, RST inferred"
)

// synRetrans is how many times the SYN sent at evs[i] was retransmitted:
// the socket's retransmission count when it left SYN_SENT.
func synRetrans(evs events, i int) uint32 {
	if i+1 < len(evs) && evs[i+1].OldState == tcp.SynSent {
		return evs[i+1].Retrans
	}
	return 0
}

// human is a duration for a note: "0.182ms", "182.4ms", "1.50s",
// "61.5s", "3m2s".
func human(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64) + "ms"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	case d < 10*time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	case d < 100*time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	}
	return d.Round(time.Second).String()
}
