// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Seed is who holds a socket that is older than the tracer.
type Seed struct {
	Inode uint64 // the socket's inode, as /proc/PID/fd shows it
	Pid   uint32
	Comm  string
}

// seedBatch is how many seeds go into the kernel per system call.
const seedBatch = 4096

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
	limit := int(m.MaxEntries())
	keys := make([]uint64, 0, seedBatch)
	vals := make([]tcpstateOwner, 0, seedBatch)
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		_, err := m.BatchUpdate(keys, vals, nil)
		if errors.Is(err, ebpf.ErrNotSupported) { // before Linux 5.6
			for i := range keys {
				if err = m.Put(keys[i], &vals[i]); err != nil {
					break
				}
			}
		}
		keys, vals = keys[:0], vals[:0]
		return err
	}
	err = seeds(func(s Seed) error {
		if seeded[s.Inode] {
			return nil
		}
		if len(seeded) >= limit {
			skipped++
			return nil
		}
		val := tcpstateOwner{Pid: s.Pid}
		for i, c := range []byte(s.Comm) {
			if i == len(val.Comm)-1 {
				break
			}
			val.Comm[i] = int8(c)
		}
		keys, vals = append(keys, s.Inode), append(vals, val)
		seeded[s.Inode] = true
		if len(keys) == seedBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return skipped, fmt.Errorf("seed socket owners: %w", err)
	}
	return skipped, nil
}
