// SPDX-License-Identifier: Apache-2.0

// Package ladder draws TCP connections as the ladder diagrams of the
// reference article: two vertical lines, one per endpoint, and an arrow
// for each segment a state transition implies (SYN, SYN+ACK, ACK, FIN,
// RST), with the sequence numbers the kernel held and the state each side
// entered. The diagram is inferred from the tracer's transitions and
// sequence numbers, not from captured packets.
//
// Build turns the transitions of one connection (one socket, or both when
// both ends are on this host) into a Diagram; Tracker groups a stream of
// transitions into connections; the renderers (text, mermaid, svg) only
// read Diagrams.
package ladder

import (
	"net/netip"
	"time"

	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// Segment is the kind of segment an arrow stands for.
type Segment uint8

// Segments.
const (
	SYN Segment = iota + 1
	SYNACK
	ACK
	FIN
	RST
)

func (s Segment) String() string {
	switch s {
	case SYN:
		return "SYN"
	case SYNACK:
		return "SYN+ACK"
	case ACK:
		return "ACK"
	case FIN:
		return "FIN"
	case RST:
		return "RST"
	}
	return "?"
}

// Side is a column of the diagram.
type Side uint8

// Sides.
const (
	Left Side = iota
	Right
)

func (s Side) other() Side { return 1 - s }

// Endpoint is one column's socket.
type Endpoint struct {
	Addr     netip.AddrPort
	Pid      uint32 // last owner seen; 0 for none
	Comm     string
	NetNS    uint32
	Inferred bool // no transition of this socket was seen: its states are inferred
	// Initial state, before the first row (LISTEN for a server, CLOSE
	// for a client, or the first state seen of an older connection).
	Initial tcp.State
	ISN     uint32
	// ISNKnown: the handshake was seen, so numbers can be relative.
	ISNKnown bool
}

// RowKind says what a row draws.
type RowKind uint8

// Row kinds.
const (
	// Arrow is a segment from From to the other side.
	Arrow RowKind = iota + 1
	// Data is payload that flowed from From to the other side between
	// the arrows around it (its bytes are the difference of sequence
	// numbers).
	Data
	// Local is a transition that sends or receives nothing: a timeout,
	// the end of TIME_WAIT.
	Local
)

// Change is a state a side entered at a row.
type Change struct {
	State tcp.State // 0: no change
	Prev  tcp.State
	// InPrev is the time spent in Prev; valid when InPrevKnown.
	InPrev      time.Duration
	InPrevKnown bool
	Inferred    bool // implied by the other side's transitions, not seen
}

// Row is one line of the ladder.
type Row struct {
	Kind RowKind
	// Time of the segment (sent, or received when the sender is
	// inferred) or of the local transition; zero for data.
	Time time.Time
	From Side // the sender (Arrow, Data), or the side of a Local row
	Seg  Segment
	Seq  uint32
	Ack  uint32
	// HasAck: the segment carries an acknowledgment number.
	HasAck bool
	Bytes  uint64 // Data
	// Enter holds the states entered by the Left and Right side.
	Enter [2]Change
	// Note explains an anomaly (a reset, a late close); "" for none.
	Note string
	// Warn marks Note as a problem rather than an explanation.
	Warn bool
}

// Diagram is one connection, ready to draw.
type Diagram struct {
	// Num numbers the connections a Tracker follows, from 1.
	Num    int
	Family tcp.Family
	// Ends are the Left and Right endpoints: the client (the side that
	// sent the first SYN) on the left when both are known.
	Ends [2]Endpoint
	// Start is the time of the first SYN, or of the first transition
	// seen when the handshake was not.
	Start time.Time
	Rows  []Row
	// Open: the connection had not ended when the diagram was drawn
	// (tracing ended, or TIME_WAIT had not).
	Open bool
	// TimeWait: open only in TIME_WAIT, whose end (60 s after it began)
	// is not waited for: both sides were done but for it.
	TimeWait bool
}

// longCloseWait is how long a CLOSE_WAIT lasts before the diagram says
// the application closed late: the peer's FIN was answered by close()
// only that much later.
const longCloseWait = time.Second

// timeWaitLen is Linux's fixed TIME_WAIT (2·MSL), and timeWaitSlack what
// it may differ by before the diagram says TIME_WAIT was cut short or
// prolonged (timer granularity, a retransmitted FIN restarting it).
const (
	timeWaitLen   = 60 * time.Second
	timeWaitSlack = 2 * time.Second
)

// events is the transitions of one socket, in order.
type events []tracer.Event
