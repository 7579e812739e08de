// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// maxSeeds is the size of the seeds map in bpf/tcpstate.bpf.c.
const maxSeeds = 65536

// seedOwners tells the kernel side who holds the sockets that existed
// before the tracer, from the socket inodes in /proc/PID/fd, so their
// transitions carry an owner too. A socket held by several processes gets
// the first one found. Returns how many sockets were left out because the
// map was full.
func seedOwners(seeds *ebpf.Map) (skipped int, err error) {
	seeded := map[uint64]bool{}
	var val tcpstateOwner
	err = walkSocketFDs(func(p *procSockets) error {
		haveComm := false
		for _, s := range p.Sockets {
			if seeded[s.Inode] {
				continue
			}
			if len(seeded) >= maxSeeds {
				skipped++
				continue
			}
			if !haveComm {
				comm, err := p.Comm()
				if err != nil {
					return nil // gone
				}
				val = tcpstateOwner{Pid: p.Pid}
				for i, c := range []byte(comm) {
					if i == len(val.Comm)-1 {
						break
					}
					val.Comm[i] = int8(c)
				}
				haveComm = true
			}
			if err := seeds.Put(s.Inode, &val); err != nil {
				return err
			}
			seeded[s.Inode] = true
		}
		return nil
	})
	if err != nil {
		return skipped, fmt.Errorf("seed socket owners: %w", err)
	}
	return skipped, nil
}
