// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// readerNice is the nice value tcpstate runs at while tracing. The kernel
// side writes events into a fixed-size ring whatever the load; on a host
// whose CPUs are saturated a reader at the default priority falls behind
// and events are lost. Its CPU use stays what the events cost.
const readerNice = -15

// raisePriority sets every thread of this process (and so the threads the
// Go runtime starts later, which inherit it) to readerNice. It is best
// effort: without CAP_SYS_NICE nothing changes.
func raisePriority() {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return
	}
	for _, task := range tasks {
		if tid, err := strconv.Atoi(task.Name()); err == nil {
			_ = unix.Setpriority(unix.PRIO_PROCESS, tid, readerNice)
		}
	}
}
