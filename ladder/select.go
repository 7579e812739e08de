// SPDX-License-Identifier: Apache-2.0

package ladder

import (
	"slices"

	"github.com/tcpstate/tcpstate/tcp"
)

// selector applies the trace filters to whole connections, in user space:
// in the kernel, --rport 80 would keep the client's socket and drop the
// server's (whose remote port is the client's), and --pid would drop a
// server child's transitions before accept(). A connection is selected
// when one of its sockets matches every filter given.
type selector struct{ f tcp.Filter }

func newSelector(f tcp.Filter) selector { return selector{f} }

func (s selector) match(c *conn) bool {
	for _, k := range c.socks {
		if k != nil && s.matchSock(k.evs) {
			return true
		}
	}
	return false
}

func (s selector) matchSock(evs events) bool {
	if len(evs) == 0 {
		return false
	}
	f := &s.f
	ev := &evs[len(evs)-1]
	if f.IPv4 != f.IPv6 && (ev.Family == tcp.IPv4) != f.IPv4 {
		return false
	}
	if len(f.LPorts) > 0 && !slices.Contains(f.LPorts, ev.LPort) ||
		len(f.RPorts) > 0 && !slices.Contains(f.RPorts, ev.RPort) {
		return false
	}
	if !f.MatchAddrs(ev.LAddr, ev.RAddr) {
		return false
	}
	if len(f.PIDs) > 0 || len(f.Comms) > 0 {
		owned := false
		for _, e := range evs {
			if e.Pid != 0 && (len(f.PIDs) == 0 || slices.Contains(f.PIDs, e.Pid)) &&
				(len(f.Comms) == 0 || slices.Contains(f.Comms, e.Comm)) {
				owned = true
				break
			}
		}
		if !owned {
			return false
		}
	}
	if len(f.States) > 0 {
		passed := false
		for _, e := range evs {
			if slices.Contains(f.States, e.OldState) || slices.Contains(f.States, e.NewState) {
				passed = true
				break
			}
		}
		if !passed {
			return false
		}
	}
	return true
}
