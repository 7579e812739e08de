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
	NetNS        uint32 // network namespace inode
	CgroupID     uint64 // cgroup v2 id of the socket
	Inode        uint64 // socket inode, 0 while not attached to a file
}
