// SPDX-License-Identifier: Apache-2.0

// Package output formats what tcpstate prints, as an aligned table for
// people or NDJSON for programs: the transitions of 'trace' and the
// connections of 'life' (through a Printer), the summary of 'ls' and the
// rows of 'stuck'. It only formats: it reads no sockets and runs no BPF.
// Transitions and connections are appended into a reused buffer, so that
// printing one does not allocate.
package output

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tcpstate/tcpstate/container"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// Format turns the transitions of 'tcpstate trace' into bytes.
type Format = RecordFormat[tracer.Event]

// Options change what the event formats show.
type Options struct {
	// Seq adds the sequence numbers snd_una, snd_nxt and rcv_nxt.
	Seq bool
	// Pods, when set, adds the container and pod of the socket's owner
	// to JSON records (container.Resolver).
	Pods Identifier
}

// Identifier tells who runs a socket's owner, from its pid or the
// socket's cgroup, at the time of a record: a container.Resolver. A
// cached answer costs a map lookup, so it can be asked for every record.
type Identifier interface {
	Lookup(pid uint32, cgroupID uint64, now time.Time) *container.Identity
}

// NewWith returns the event format called name ("table" or "json") with
// options o.
func NewWith(name string, o Options) (Format, error) {
	switch name {
	case "table":
		return newTable(o), nil
	case "json":
		return newJSON(o), nil
	}
	return nil, fmt.Errorf("unknown output format %q (want table or json)", name)
}

// appendState appends s.String() without the allocation String makes
// for states the kernel may add later.
func appendState(dst []byte, s tcp.State) []byte {
	if s >= tcp.Established && s <= tcp.NewSynRecv {
		return append(dst, s.String()...)
	}
	dst = append(dst, "STATE_"...)
	return strconv.AppendUint(dst, uint64(s), 10)
}
