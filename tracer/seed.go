// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// maxSeeds is the size of the seeds map in bpf/tcpstate.bpf.c.
const maxSeeds = 65536

// Seed is who holds a socket that is older than the tracer.
type Seed struct {
	Inode uint64 // the socket's inode, as /proc/PID/fd shows it
	Pid   uint32
	Comm  string
}

// seedOwners tells the kernel side who holds the sockets that existed
// before the tracer, as seeds puts them, so their transitions carry an
// owner too. A socket put several times (held by several processes)
// keeps the first. Returns how many were left out because the map was
// full.
func seedOwners(m *ebpf.Map, seeds func(put func(Seed) error) error) (skipped int, err error) {
	if seeds == nil {
		return 0, nil
	}
	seeded := map[uint64]bool{}
	var val tcpstateOwner
	err = seeds(func(s Seed) error {
		if seeded[s.Inode] {
			return nil
		}
		if len(seeded) >= maxSeeds {
			skipped++
			return nil
		}
		val = tcpstateOwner{Pid: s.Pid}
		for i, c := range []byte(s.Comm) {
			if i == len(val.Comm)-1 {
				break
			}
			val.Comm[i] = int8(c)
		}
		if err := m.Put(s.Inode, &val); err != nil {
			return err
		}
		seeded[s.Inode] = true
		return nil
	})
	if err != nil {
		return skipped, fmt.Errorf("seed socket owners: %w", err)
	}
	return skipped, nil
}
