// SPDX-License-Identifier: Apache-2.0

package tcp

import "net/netip"

// Filter selects sockets: the tracer applies it in the kernel, snapshots
// in user space. Zero values mean "every socket".
type Filter struct {
	IPv4, IPv6 bool // both or neither: either family
	PIDs       []uint32
	Comms      []string
	LPorts     []uint16
	RPorts     []uint16
	LAddrs     []netip.Prefix
	RAddrs     []netip.Prefix
	// States: for the tracer, transitions into or out of these states;
	// for a snapshot, sockets in these states.
	States   []State
	CgroupID uint64 // this cgroup v2 or below it
	NetNS    uint32 // one network namespace, by inode
}

// MatchAddrs tells whether laddr is in LAddrs and raddr in RAddrs (an
// empty list matches every address): the address filters as user space
// applies them (snapshots, ladder).
func (f *Filter) MatchAddrs(laddr, raddr netip.Addr) bool {
	return inPrefixes(laddr, f.LAddrs) && inPrefixes(raddr, f.RAddrs)
}

func inPrefixes(a netip.Addr, list []netip.Prefix) bool {
	if len(list) == 0 {
		return true
	}
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
