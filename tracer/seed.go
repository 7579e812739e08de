// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"fmt"
	"os"
	"strconv"
	"strings"

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
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("seed socket owners: %w", err)
	}
	seeded := map[uint64]bool{}
	var val tcpstateOwner
	for _, p := range procs {
		pid, err := strconv.ParseUint(p.Name(), 10, 32)
		if err != nil {
			continue
		}
		dir := "/proc/" + p.Name()
		fds, err := os.ReadDir(dir + "/fd")
		if err != nil {
			continue // gone, or a kernel thread
		}
		haveComm := false
		for _, fd := range fds {
			target, err := os.Readlink(dir + "/fd/" + fd.Name())
			if err != nil {
				continue
			}
			num, ok := strings.CutPrefix(target, "socket:[")
			if !ok {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(num, "]"), 10, 64)
			if err != nil || seeded[ino] {
				continue
			}
			if len(seeded) >= maxSeeds {
				skipped++
				continue
			}
			if !haveComm {
				comm, err := os.ReadFile(dir + "/comm")
				if err != nil {
					break
				}
				val = tcpstateOwner{Pid: uint32(pid)}
				for i, c := range []byte(strings.TrimSuffix(string(comm), "\n")) {
					if i == len(val.Comm)-1 {
						break
					}
					val.Comm[i] = int8(c)
				}
				haveComm = true
			}
			if err := seeds.Put(ino, &val); err != nil {
				return skipped, fmt.Errorf("seed socket owners: %w", err)
			}
			seeded[ino] = true
		}
	}
	return skipped, nil
}
