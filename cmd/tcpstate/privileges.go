// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// checkSnapshotPrivileges refuses to take a snapshot of the sockets
// without CAP_SYS_PTRACE: /proc/PID/fd of other users' processes could not
// be read, so their sockets would show no holder and --pid, --comm would
// miss them, with nothing said. cmd names the command.
func checkSnapshotPrivileges(cmd string) error {
	caps, ok := effectiveCaps()
	if !ok || caps&(1<<unix.CAP_SYS_PTRACE) != 0 {
		return nil // cannot tell, or allowed
	}
	return fmt.Errorf("%s needs root, or the CAP_SYS_PTRACE capability to see which processes hold each socket "+
		"(and CAP_SYS_ADMIN to read other network namespaces): run it with sudo", cmd)
}

// effectiveCaps returns the effective capability set of this process, from
// /proc/self/status; ok is false when it cannot be read.
func effectiveCaps() (caps uint64, ok bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		hex, found := strings.CutPrefix(sc.Text(), "CapEff:")
		if !found {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		return caps, err == nil
	}
	return 0, false
}
