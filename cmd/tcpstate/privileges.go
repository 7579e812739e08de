// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/tracer"
)

// checkSnapshotPrivileges refuses to take a snapshot of the sockets
// without CAP_SYS_PTRACE: /proc/PID/fd of other users' processes could not
// be read, so their sockets would show no holder and --pid, --comm would
// miss them, with nothing said. cmd names the command.
func checkSnapshotPrivileges(cmd string) error {
	caps, ok := tracer.EffectiveCaps()
	if !ok || caps&(1<<unix.CAP_SYS_PTRACE) != 0 {
		return nil // cannot tell, or allowed
	}
	return fmt.Errorf("%s needs root, or the CAP_SYS_PTRACE capability to see which processes hold each socket "+
		"(and CAP_SYS_ADMIN to read other network namespaces): run it with sudo", cmd)
}
