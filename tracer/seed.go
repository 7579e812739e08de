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

// symbol is a kernel address read from /proc/kallsyms, or why not.
type symbol struct {
	addr uint64
	err  error
}

// seedList is what a Seeds function put, each socket once (the first
// holder put), or why it failed.
type seedList struct {
	seeds []Seed
	err   error
}

// collectSeeds runs seeds in the background: it reads /proc while the
// programs load. A socket made between this read and the attach has no
// seed; its owner is known if its transitions start a new life (connect,
// listen, accept), as for any socket made after the attach.
func collectSeeds(seeds func(put func(Seed) error) error) <-chan seedList {
	out := make(chan seedList, 1)
	if seeds == nil {
		out <- seedList{}
		return out
	}
	go func() {
		var l seedList
		seen := map[uint64]bool{}
		l.err = seeds(func(s Seed) error {
			if !seen[s.Inode] {
				seen[s.Inode] = true
				l.seeds = append(l.seeds, s)
			}
			return nil
		})
		out <- l
	}()
	return out
}

// seedBatch is how many seeds go into the kernel per system call.
const seedBatch = 4096

// seedOwners tells the kernel side who holds the sockets that existed
// before the tracer, so their transitions carry an owner too. Returns how
// many were left out because the map was full.
func seedOwners(m *ebpf.Map, l seedList) (skipped int, err error) {
	if l.err != nil {
		return 0, fmt.Errorf("seed socket owners: %w", l.err)
	}
	seeds := l.seeds
	if limit := int(m.MaxEntries()); len(seeds) > limit {
		skipped, seeds = len(seeds)-limit, seeds[:limit]
	}
	keys := make([]uint64, 0, seedBatch)
	vals := make([]tcpstateOwner, 0, seedBatch)
	for start := 0; start < len(seeds); start += seedBatch {
		keys, vals = keys[:0], vals[:0]
		for _, s := range seeds[start:min(start+seedBatch, len(seeds))] {
			val := tcpstateOwner{Pid: s.Pid}
			for i, c := range []byte(s.Comm) {
				if i == len(val.Comm)-1 {
					break
				}
				val.Comm[i] = int8(c)
			}
			keys, vals = append(keys, s.Inode), append(vals, val)
		}
		_, err := m.BatchUpdate(keys, vals, nil)
		if errors.Is(err, ebpf.ErrNotSupported) { // before Linux 5.6
			for i := range keys {
				if err = m.Put(keys[i], &vals[i]); err != nil {
					break
				}
			}
		}
		if err != nil {
			return skipped, fmt.Errorf("seed socket owners: %w", err)
		}
	}
	return skipped, nil
}
