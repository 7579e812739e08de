// SPDX-License-Identifier: Apache-2.0

package tcp

import "net/netip"

// Filter selects sockets: the tracer applies it in the kernel, snapshots
// in user space. Zero values mean "every socket".
type Filter struct {
	// IPv4, IPv6: both or neither, either family. A socket of family
	// IPv6 whose address is IPv4-mapped (::ffff:a.b.c.d, a dual-stack
	// server's IPv4 client) is IPv4, as it is printed: see MatchFamily.
	IPv4, IPv6 bool
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

// MatchFamily tells whether a socket of family fam with these addresses
// (IPv4-mapped ones unmapped, as tcpstate keeps them) is selected by IPv4
// and IPv6: a socket is IPv4 when it is of that family or either address
// is IPv4 in an IPv6 socket (mapped); the unspecified "::" of an IPv6
// listener is IPv6.
func (f *Filter) MatchFamily(fam Family, laddr, raddr netip.Addr) bool {
	if f.IPv4 == f.IPv6 {
		return true
	}
	v4 := fam == IPv4 || laddr.Is4() || raddr.Is4()
	return v4 == f.IPv4
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
