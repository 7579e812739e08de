// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/tcpstate/tcpstate/snapshot"
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
	err = snapshot.SocketOwners(func(inode uint64, o snapshot.Owner) error {
		if seeded[inode] {
			return nil
		}
		if len(seeded) >= maxSeeds {
			skipped++
			return nil
		}
		val = tcpstateOwner{Pid: o.Pid}
		for i, c := range []byte(o.Comm) {
			if i == len(val.Comm)-1 {
				break
			}
			val.Comm[i] = int8(c)
		}
		if err := seeds.Put(inode, &val); err != nil {
			return err
		}
		seeded[inode] = true
		return nil
	})
	if err != nil {
		return skipped, fmt.Errorf("seed socket owners: %w", err)
	}
	return skipped, nil
}
