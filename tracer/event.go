// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"net/netip"
	"time"
)

// Family is a socket's address family.
type Family uint8

// Address families, as printed.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String returns "ipv4" or "ipv6".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "unknown"
}

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
	Family   Family
	LAddr    netip.Addr // IPv4-mapped IPv6 addresses are unmapped
	LPort    uint16
	RAddr    netip.Addr
	RPort    uint16
	OldState State
	NewState State
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
	// Sequence numbers at the transition (absolute, as tcpdump -S shows).
	SndUna, SndNxt, RcvNxt uint32
	// Payload bytes acknowledged by the peer and received from it so far,
	// and segments retransmitted.
	TxBytes, RxBytes uint64
	Retrans          uint32

	mono  uint64 // bpf_ktime_get_ns of the transition
	flags uint16
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
