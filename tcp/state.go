// SPDX-License-Identifier: Apache-2.0

// Package tcp names what the kernel calls TCP states and address families,
// for the packages that read sockets (snapshot) and follow them (tracer).
package tcp

import (
	"fmt"
	"strings"
)

// State is a TCP state as numbered in the kernel's include/net/tcp_states.h.
type State uint8

// The kernel's TCP states.
const (
	Established State = iota + 1
	SynSent
	SynRecv
	FinWait1
	FinWait2
	TimeWait
	Close
	CloseWait
	LastAck
	Listen
	Closing
	NewSynRecv
)

var stateNames = [...]string{
	Established: "ESTABLISHED",
	SynSent:     "SYN_SENT",
	SynRecv:     "SYN_RECV",
	FinWait1:    "FIN_WAIT1",
	FinWait2:    "FIN_WAIT2",
	TimeWait:    "TIME_WAIT",
	Close:       "CLOSE",
	CloseWait:   "CLOSE_WAIT",
	LastAck:     "LAST_ACK",
	Listen:      "LISTEN",
	Closing:     "CLOSING",
	NewSynRecv:  "NEW_SYN_RECV",
}

// String returns the kernel's name without the TCP_ prefix, e.g. CLOSE_WAIT.
func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE_%d", uint8(s))
}

// States lists every known state in kernel order.
func States() []State {
	out := make([]State, 0, len(stateNames)-1)
	for s := Established; s <= NewSynRecv; s++ {
		out = append(out, s)
	}
	return out
}

// stateAliases are the other spellings people type: ss(8) names and
// the long forms of the RFC.
var stateAliases = map[string]State{
	"CLOSED":       Close,
	"FIN_WAIT_1":   FinWait1,
	"FIN_WAIT_2":   FinWait2,
	"SYN_RECEIVED": SynRecv,
}

// ParseState accepts a state name in any case, with or without the TCP_
// prefix, with '-' or '_' (so "close-wait", "CLOSE_WAIT" and
// "tcp_close_wait" are the same).
func ParseState(name string) (State, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	n = strings.ReplaceAll(n, "-", "_")
	n = strings.TrimPrefix(n, "TCP_")
	for s := Established; s <= NewSynRecv; s++ {
		if stateNames[s] == n {
			return s, nil
		}
	}
	if s, ok := stateAliases[n]; ok {
		return s, nil
	}
	return 0, fmt.Errorf("unknown TCP state %q", name)
}
