// SPDX-License-Identifier: Apache-2.0

package output

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/tcpstate/tcpstate/container"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
)

// This file is the model of 'tcpstate ls', not formatting: it counts
// sockets per state and group. It stays in output, beside ls.go that
// prints it, because nothing else uses it; it depends on no formatting.

// GroupBy is how 'tcpstate ls' groups its counts within each state.
type GroupBy int

// Groupings.
const (
	ByState   GroupBy = iota // state only
	ByProcess                // owning process (pid and comm)
	ByRemote                 // remote address
	ByLocal                  // local address and port
	ByPod                    // pod of the holding processes
)

// ParseGroupBy accepts "", "state", "process", "remote" and "local".
func ParseGroupBy(s string) (GroupBy, error) {
	switch s {
	case "", "state":
		return ByState, nil
	case "process":
		return ByProcess, nil
	case "remote":
		return ByRemote, nil
	case "local":
		return ByLocal, nil
	case "pod":
		return ByPod, nil
	}
	return 0, fmt.Errorf("unknown grouping %q (want process, remote, local or pod)", s)
}

// SummaryRow is one line of the summary: the sockets of one state (and
// group).
type SummaryRow struct {
	State tcp.State
	Pid   uint32 // ByProcess; 0 for sockets no process holds
	Comm  string
	Addr  netip.Addr // ByRemote: remote address; ByLocal: local address
	Port  uint16     // ByLocal: local port
	// Identity is the container and pod of the process (ByProcess), or
	// the pod (ByPod: PodUID, Namespace, Pod); nil outside containers.
	Identity *container.Identity
	Count    int
	// Oldest is the largest age lower bound in the group (see
	// snapshot.Socket.Age); OldestKnown is false when no socket of the
	// group has one.
	Oldest      time.Duration
	OldestKnown bool
	// Of LISTEN rows, summed over their listeners: the connections
	// waiting in the accept queues, the queues' limits (backlog), and the
	// SYNs and handshake ACKs dropped since the listeners exist (their
	// sk_drops: the kernel's ListenDrops of each); DropsKnown when the
	// kernel gave it. --by local gives a row per listener.
	AcceptQueue, Backlog uint64
	ListenDrops          uint64
	DropsKnown           bool
	Full                 int // listeners whose accept queue is full
}

type summaryKey struct {
	state tcp.State
	pid   uint32
	comm  string
	addr  netip.Addr
	port  uint16
	pod   container.Identity // ByPod
}

// Summary counts sockets per state, and per group within a state.
type Summary struct {
	by         GroupBy
	pods       Identifier
	rows       map[summaryKey]*SummaryRow
	total      int
	namespaces map[uint32]bool
}

// NewSummary returns an empty summary grouping by by.
func NewSummary(by GroupBy) *Summary { return NewSummaryWith(by, nil) }

// NewSummaryWith returns an empty summary grouping by by, naming the
// containers and pods of the holders with pods (needed for ByPod).
func NewSummaryWith(by GroupBy, pods Identifier) *Summary {
	return &Summary{by: by, pods: pods, rows: map[summaryKey]*SummaryRow{}, namespaces: map[uint32]bool{}}
}

func (sm *Summary) identity(pid uint32, s *snapshot.Socket) *container.Identity {
	if sm.pods == nil {
		return nil
	}
	return sm.pods.Lookup(pid, s.CgroupID, s.Seen)
}

// Add counts s. With ByProcess a socket held by several processes counts
// once for each of them (and once, without owner, when none holds it).
func (sm *Summary) Add(s *snapshot.Socket) {
	sm.total++
	sm.namespaces[s.NetNS] = true
	k := summaryKey{state: s.State}
	switch sm.by {
	case ByRemote:
		k.addr = s.RAddr
	case ByLocal:
		k.addr, k.port = s.LAddr, s.LPort
	case ByProcess:
		var last uint32
		for i, o := range s.Owners {
			if i > 0 && o.Pid == last {
				continue // the same process on another fd
			}
			last = o.Pid
			k.pid, k.comm = o.Pid, o.Comm
			sm.add(k, s)
		}
		if len(s.Owners) > 0 {
			return
		}
	case ByPod:
		// Each pod once, whatever number of its processes hold it.
		var seen [4]container.Identity
		n := 0
		for _, o := range s.Owners {
			k.pod = podOf(sm.identity(o.Pid, s))
			if slices.Contains(seen[:min(n, len(seen))], k.pod) {
				continue
			}
			if n < len(seen) {
				seen[n] = k.pod
			}
			n++
			sm.add(k, s)
		}
		if n > 0 {
			return
		}
		k.pod = podOf(sm.identity(0, s))
	}
	sm.add(k, s)
}

// podOf keeps what names a pod of id.
func podOf(id *container.Identity) container.Identity {
	if id == nil || id.PodUID == "" {
		return container.Identity{}
	}
	return container.Identity{PodUID: id.PodUID, Namespace: id.Namespace, Pod: id.Pod}
}

func (sm *Summary) add(k summaryKey, s *snapshot.Socket) {
	r := sm.rows[k]
	if r == nil {
		r = &SummaryRow{State: k.state, Pid: k.pid, Comm: k.comm, Addr: k.addr, Port: k.port}
		switch {
		case sm.by == ByProcess && k.pid != 0:
			r.Identity = sm.identity(k.pid, s)
		case sm.by == ByPod && k.pod.PodUID != "":
			pod := k.pod
			r.Identity = &pod
		}
		sm.rows[k] = r
	}
	r.Count++
	if s.State == tcp.Listen {
		r.AcceptQueue += uint64(s.RecvQ)
		r.Backlog += uint64(s.SendQ)
		if s.HasDrops {
			r.ListenDrops += uint64(s.Drops)
			r.DropsKnown = true
		}
		if s.AcceptQueueFull() {
			r.Full++
		}
	}
	if s.AgeKnown && (!r.OldestKnown || s.Age > r.Oldest) {
		r.Oldest, r.OldestKnown = s.Age, true
	}
}

// Namespaces returns in how many network namespaces they were.
func (sm *Summary) Namespaces() int { return len(sm.namespaces) }

// Rows returns the rows in the kernel's order of states and, within a
// state, the largest groups first.
func (sm *Summary) Rows() []SummaryRow {
	out := make([]SummaryRow, 0, len(sm.rows))
	for _, r := range sm.rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b SummaryRow) int {
		return cmp.Or(
			cmp.Compare(a.State, b.State),
			cmp.Compare(b.Count, a.Count),
			cmp.Compare(a.Pid, b.Pid),
			cmp.Compare(a.Comm, b.Comm),
			a.Addr.Compare(b.Addr),
			cmp.Compare(a.Port, b.Port),
			cmp.Compare(podName(a.Identity), podName(b.Identity)),
		)
	})
	return out
}

// podName is how a table names a pod: namespace/pod, its uid when
// kubelet's logs do not name it, "" outside pods.
func podName(id *container.Identity) string {
	switch {
	case id == nil || id.PodUID == "":
		return ""
	case id.Pod == "":
		return id.PodUID
	}
	return id.Namespace + "/" + id.Pod
}
