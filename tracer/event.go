// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"net/netip"
	"time"

	"github.com/tcpstate/tcpstate/tcp"
)

// Event is one TCP state transition of one socket.
type Event struct {
	Time   time.Time // wall clock of the transition
	Skaddr uint64    // kernel address of the socket; identifies it while it lives
	// Cookie is the kernel's socket cookie: it identifies one connection
	// for its whole life, TIME_WAIT included, and is never reused. 0 when
	// unknown (classic tracepoints, for a socket that never had one).
	Cookie uint64
	// Pid and Comm name the process owning the socket (the one that called
	// connect or listen, or got it from accept), not the task that happened
	// to be on the CPU. 0 and "" while no process owns it.
	Pid      uint32
	Comm     string
	Family   tcp.Family
	LAddr    netip.Addr // IPv4-mapped IPv6 addresses are unmapped
	LPort    uint16
	RAddr    netip.Addr
	RPort    uint16
	OldState tcp.State
	NewState tcp.State
	// InState is the time spent in OldState; valid only if InStateKnown
	// (it is not for sockets older than the tracer, nor for the first
	// transition of a socket).
	InState      time.Duration
	InStateKnown bool
	NetNS        uint32 // network namespace inode (reused after the namespace is gone)
	NetNSCookie  uint64 // network namespace cookie, never reused; 0 before Linux 5.14
	CgroupID     uint64 // cgroup v2 id of the socket
	// Synthesized marks transitions the kernel does not report, derived by
	// tcpstate: entering and leaving TIME_WAIT, the end of an orphaned
	// FIN_WAIT2.
	Synthesized bool
	// Reset tells whether a RST was sent or received on the socket so far.
	Reset Reset
	// ResetReason is the kernel's reason for the RST it sent (Linux 6.10
	// and later; ReasonUnknown before, and when none was sent).
	ResetReason ResetReason
	// Error is the error the socket ended on, as its application saw it
	// (ECONNRESET, ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH...), on the
	// transition to CLOSE; 0 for none.
	Error Errno
	// Suppressed, on a NoteNoSocket, counts the RSTs to no socket sent
	// before it (on its CPU) that were not recorded one by one: the BPF
	// side records at most 100 a second per CPU.
	Suppressed uint32
	// Sequence numbers at the transition (absolute, as tcpdump -S shows).
	SndUna, SndNxt, RcvNxt uint32
	// Payload bytes acknowledged by the peer and received from it so far,
	// and segments retransmitted.
	TxBytes, RxBytes uint64
	Retrans          uint32

	// Note is set on records that are not transitions (see Noter).
	Note Note
	// Path, with Options.Life, is the whole path of the connection whose
	// last transition this is (or, with Orphan set, of one that lives on
	// as an orphan): one record per connection instead of one per
	// transition. Nil otherwise. It is reused with ev.
	Path *Path

	mono  uint64 // bpf_ktime_get_ns of the transition
	flags uint16
}

// Note says what a record that is not a transition tells.
type Note uint8

// Notes.
const (
	NoteNone Note = iota // a transition
	// NoteLateReset: a RST (Reset) sent or received by a socket that
	// already reported CLOSE; the kernel sends the RST of an abortive
	// close() after it.
	NoteLateReset
	// NoteOrphan: the socket was closed in FIN_WAIT2 and the connection
	// lives on as an orphaned timewait socket; its later transitions
	// (FIN_WAIT2 -> TIME_WAIT or -> CLOSE) carry the same Cookie.
	NoteOrphan
	// NoteNoSocket: a RST sent for a segment that found no socket (a
	// connect to a closed port, a segment of a connection this host does
	// not know); the tuple is the segment's (local: its destination), Pid
	// 0, Reset ResetSent, and Suppressed tells how many before it were
	// not recorded. Linux 6.9 and later report these.
	NoteNoSocket
)

// Path is what the kernel kept of a connection for 'life' (Options.Life):
// its states in order, when each was entered, and the counters the
// connection's record reads at its handshake and first FIN.
type Path struct {
	From  tcp.State // the state before the first step
	Steps []PathStep
	// Orphan: closed in FIN_WAIT2, the connection lives on as an orphaned
	// timewait socket; its end comes as a transition (FIN_WAIT2 ->
	// TIME_WAIT or CLOSE) with the same Cookie.
	Orphan bool
	// Truncated: more states than the kernel keeps (PathSteps, more than
	// a TCP connection passes through); the last replaced the one
	// before. Counted too (Shortfalls).
	Truncated bool
	// SndUna and RcvNxt on entering ESTABLISHED from SYN_SENT or
	// SYN_RECV, if HandshakeSeen.
	HandshakeSeen  bool
	SndUna, RcvNxt uint32
	// FinRx is RxBytes at our first FIN (FIN_WAIT1), FinSndNxt SndNxt at
	// the peer's (CLOSE_WAIT): the model of half-closes needs them.
	FinRx     uint64
	FinSndNxt uint32
}

// PathStep is one state of a Path.
type PathStep struct {
	State tcp.State
	Time  time.Time // entered
}

// PathSteps is how many states a Path holds.
const PathSteps = int(tcpstatePathLayoutPATH_STEPS)

// Noter is a Handler that also wants the notes.
type Noter interface {
	Note(ev *Event) error
}

// Reset records RSTs seen on a socket.
type Reset uint8

// Reset bits.
const (
	ResetSent     Reset = 1
	ResetReceived Reset = 2
)

// String returns "sent", "received", both joined by "+", or "".
func (r Reset) String() string {
	switch r {
	case 0:
		return ""
	case ResetSent:
		return "sent"
	case ResetReceived:
		return "received"
	}
	return "sent+received"
}

// ConnID identifies the connection of ev: its cookie, or where there is
// none its socket address.
func (ev *Event) ConnID() uint64 {
	if ev.Cookie != 0 {
		return ev.Cookie
	}
	return ev.Skaddr
}
