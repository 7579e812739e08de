// SPDX-License-Identifier: Apache-2.0

// Package container tells who runs a process or a cgroup: the container
// (its id and runtime), the Kubernetes pod (its uid) and, where the node
// has them without API credentials, the names of the pod's namespace, the
// pod and the container. Ids come from /proc/PID/cgroup (cgroup v1 and
// v2) or the cgroup v2 tree; names from kubelet's log directories
// (/var/log/pods/<namespace>_<pod>_<uid>/<container>/ and the
// /var/log/containers/<pod>_<namespace>_<container>-<id>.log links).
//
// A Resolver caches what it read, bounded, so that asking about the owner
// of every event is a map lookup.
package container

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Identity is who runs a process. A process outside any container has
// none (a nil *Identity); inside one, the fields not known are "".
type Identity struct {
	ContainerID string // the runtime's id, 64 hex digits (or an nspawn machine name)
	Runtime     string // containerd, cri-o, docker, podman, systemd-nspawn; "" when the path does not say
	PodUID      string // "" outside Kubernetes
	Namespace   string // the pod's namespace, when kubelet's logs name it
	Pod         string
	Container   string // the container's name in its pod (or the nspawn machine)
}

// Options configure a Resolver. Zero values take the defaults.
type Options struct {
	ProcRoot string // /proc
	// CgroupRoot is where the cgroup v2 hierarchy is mounted, to find
	// a cgroup by its id (a socket's); "" for no lookups by cgroup id.
	CgroupRoot      string
	PodLogDir       string // /var/log/pods
	ContainerLogDir string // /var/log/containers
	// MaxEntries bounds the processes and the cgroups remembered
	// (each); beyond it the oldest are forgotten and counted.
	MaxEntries int // 65536
	// TTL is how long what a process's cgroup said is trusted: its pid
	// may be reused, and a process may move.
	TTL time.Duration // 10 s
}

// Defaults.
const (
	DefaultProcRoot        = "/proc"
	DefaultPodLogDir       = "/var/log/pods"
	DefaultContainerLogDir = "/var/log/containers"
	DefaultMaxEntries      = 1 << 16
	DefaultTTL             = 10 * time.Second
	// maxNames bounds the pods and containers named from the logs.
	maxNames = 1 << 16
	// The names are read again when a container or pod without one is
	// met (new pods), at most every rescanMiss, and every rescanAll in
	// any case (pods that went away).
	rescanMiss = time.Second
	rescanAll  = 30 * time.Second
	// walkEvery bounds how often the cgroup v2 tree is walked for an id
	// not seen yet.
	walkEvery = 5 * time.Second
)

// Stats count what a Resolver holds and what it had to drop.
type Stats struct {
	Processes, Cgroups int // remembered now
	Pods, Containers   int // named from the logs now
	// Evictions counts processes and cgroups forgotten before their
	// time because MaxEntries were remembered.
	Evictions uint64
	// NamesDropped counts pods and containers left unnamed because the
	// logs named more than the index holds.
	NamesDropped uint64
}

// Resolver answers who runs a process or a cgroup, caching the answers.
// It is safe for concurrent use (the metrics collector asks from its
// scrapes while events come in).
type Resolver struct {
	opts Options

	mu      sync.Mutex
	pids    map[uint32]*entry
	cgroups map[uint64]*entry
	walked  time.Time
	// identities are shared by every process of a container; rebuilt
	// when the names are read again (gen).
	identities map[Path]*Identity
	gen        uint64
	names      names
	scanned    time.Time
	evictions  uint64
	buf        []byte
}

// entry is what a process's or cgroup's path said, and when.
type entry struct {
	path Path
	read time.Time
	gen  uint64
	id   *Identity // for gen
}

// names is what kubelet's log directories say.
type names struct {
	pods       map[string]podName // by uid
	containers map[string]string  // container name by container id
	dropped    uint64
}

type podName struct {
	namespace, pod string
	containers     []string // the container directories of the pod
}

// New returns a Resolver with options o.
func New(o Options) *Resolver {
	if o.ProcRoot == "" {
		o.ProcRoot = DefaultProcRoot
	}
	if o.PodLogDir == "" {
		o.PodLogDir = DefaultPodLogDir
	}
	if o.ContainerLogDir == "" {
		o.ContainerLogDir = DefaultContainerLogDir
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	return &Resolver{opts: o, pids: map[uint32]*entry{}, cgroups: map[uint64]*entry{},
		identities: map[Path]*Identity{}, buf: make([]byte, 4096)}
}

// Lookup returns who runs the process pid or, when pid is 0 or its
// cgroup names no container (the process is gone), the cgroup v2
// cgroupID; nil when neither is in a container. now is the time of the
// question (an event's), against which cached answers age. A cached
// answer costs a map lookup.
func (r *Resolver) Lookup(pid uint32, cgroupID uint64, now time.Time) *Identity {
	// No defer: this runs for every event, and nothing in it panics.
	r.mu.Lock()
	id := r.lookup(pid, cgroupID, now)
	r.mu.Unlock()
	return id
}

func (r *Resolver) lookup(pid uint32, cgroupID uint64, now time.Time) *Identity {
	if pid != 0 {
		if id := r.process(pid, now); id != nil {
			return id
		}
	}
	if cgroupID > 1 && r.opts.CgroupRoot != "" { // 1 is the root
		return r.cgroup(cgroupID, now)
	}
	return nil
}

// Process returns who runs the process pid; nil outside a container.
func (r *Resolver) Process(pid uint32, now time.Time) *Identity {
	return r.Lookup(pid, 0, now)
}

// Stats returns the counts.
func (r *Resolver) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{Processes: len(r.pids), Cgroups: len(r.cgroups), Pods: len(r.names.pods),
		Containers: len(r.names.containers), Evictions: r.evictions, NamesDropped: r.names.dropped}
}

func (r *Resolver) process(pid uint32, now time.Time) *Identity {
	e := r.pids[pid]
	if e == nil || now.Sub(e.read) >= r.opts.TTL {
		if e == nil {
			r.evictions += makeRoom(r.pids, r.opts.MaxEntries, r.opts.TTL, now)
			e = &entry{}
			r.pids[pid] = e
		}
		e.path, e.read, e.gen, e.id = r.readProc(pid), now, 0, nil
	}
	return r.identity(e, now)
}

// readProc reads /proc/PID/cgroup; a process gone or unreadable is in no
// container.
func (r *Resolver) readProc(pid uint32) Path {
	f, err := os.Open(r.opts.ProcRoot + "/" + strconv.FormatUint(uint64(pid), 10) + "/cgroup")
	if err != nil {
		return Path{}
	}
	defer f.Close()
	n, err := io.ReadFull(f, r.buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return Path{}
	}
	return ParseProcCgroup(r.buf[:n])
}

func (r *Resolver) cgroup(id uint64, now time.Time) *Identity {
	e := r.cgroups[id]
	stale := e == nil || !e.path.InContainer() && now.Sub(e.read) >= walkEvery
	if stale && now.Sub(r.walked) >= walkEvery {
		r.walk(now)
		e = r.cgroups[id]
	}
	if e == nil {
		// Not a container's cgroup, or not there yet: remembered as
		// none until the next walk.
		r.evictions += makeRoom(r.cgroups, r.opts.MaxEntries, walkEvery, now)
		e = &entry{read: now}
		r.cgroups[id] = e
	}
	return r.identity(e, now)
}

// walk maps the ids of the containers' cgroups in the cgroup v2 tree.
func (r *Resolver) walk(now time.Time) {
	r.walked = now
	found := map[uint64]*entry{}
	root := filepath.Clean(r.opts.CgroupRoot)
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		p := ParsePath(strings.TrimPrefix(path, root))
		if !p.InContainer() || len(found) >= r.opts.MaxEntries {
			return nil
		}
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil {
			found[st.Ino] = &entry{path: p, read: now}
		}
		return nil
	})
	r.cgroups = found
}

// makeRoom forgets entries when m holds max: first those past ttl, then
// any, down to 7/8 of max (so that a full cache is not swept at every
// miss); it returns how many of the latter it forgot.
func makeRoom[K comparable](m map[K]*entry, max int, ttl time.Duration, now time.Time) uint64 {
	if len(m) < max {
		return 0
	}
	for k, e := range m {
		if now.Sub(e.read) >= ttl {
			delete(m, k)
		}
	}
	var n uint64
	for k := range m {
		if len(m) < max*7/8 {
			break
		}
		delete(m, k)
		n++
	}
	return n
}

// identity returns e's Identity for the current names, reading the names
// again when they lack e's pod or container.
func (r *Resolver) identity(e *entry, now time.Time) *Identity {
	if !e.path.InContainer() {
		return nil
	}
	if e.id != nil && e.gen == r.gen {
		return e.id
	}
	if now.Sub(r.scanned) >= rescanAll || !r.named(e.path) && now.Sub(r.scanned) >= rescanMiss {
		r.scan(now)
	}
	id := r.identities[e.path]
	if id == nil {
		id = r.build(e.path)
		if len(r.identities) >= r.opts.MaxEntries {
			clear(r.identities)
		}
		r.identities[e.path] = id
	}
	e.id, e.gen = id, r.gen
	return id
}

// named says whether the names know p's pod and container.
func (r *Resolver) named(p Path) bool {
	if p.PodUID == "" {
		return true // nothing to name outside Kubernetes
	}
	pod, ok := r.names.pods[p.PodUID]
	if !ok {
		return false
	}
	_, ok = r.names.containers[p.ID]
	return ok || p.ID == "" || len(pod.containers) == 1
}

func (r *Resolver) build(p Path) *Identity {
	id := &Identity{ContainerID: p.ID, Runtime: p.Runtime, PodUID: p.PodUID}
	if p.Runtime == RuntimeNspawn {
		id.Container = p.ID
	}
	if p.PodUID == "" {
		return id
	}
	pod, ok := r.names.pods[p.PodUID]
	if !ok {
		return id
	}
	id.Namespace, id.Pod = pod.namespace, pod.pod
	if p.ID == "" {
		return id
	}
	if name, ok := r.names.containers[p.ID]; ok {
		id.Container = name
	} else if len(pod.containers) == 1 {
		// One container directory: it is this container's, unless this
		// is the pod's sandbox (pause), which has no directory of its
		// own. Only a pod without a /var/log/containers link comes here.
		id.Container = pod.containers[0]
	}
	return id
}

// scan reads the names from kubelet's log directories again; a new
// generation of identities follows.
func (r *Resolver) scan(now time.Time) {
	r.scanned = now
	r.gen++
	clear(r.identities)
	n := names{pods: map[string]podName{}, containers: map[string]string{}, dropped: r.names.dropped}
	if dirs, err := os.ReadDir(r.opts.PodLogDir); err == nil {
		for _, d := range dirs {
			ns, pod, uid, ok := splitPodDir(d.Name())
			if !ok || !d.IsDir() {
				continue
			}
			if len(n.pods) >= maxNames {
				n.dropped++
				continue
			}
			pn := podName{namespace: ns, pod: pod}
			if subs, err := os.ReadDir(filepath.Join(r.opts.PodLogDir, d.Name())); err == nil {
				for _, s := range subs {
					if s.IsDir() && len(pn.containers) < 64 {
						pn.containers = append(pn.containers, s.Name())
					}
				}
			}
			n.pods[uid] = pn
		}
	}
	if f, err := os.Open(r.opts.ContainerLogDir); err == nil {
		links, _ := f.Readdirnames(-1)
		f.Close()
		for _, l := range links {
			name, id, ok := splitContainerLog(l)
			if !ok {
				continue
			}
			if len(n.containers) >= maxNames {
				n.dropped++
				continue
			}
			n.containers[id] = name
		}
	}
	r.names = n
}

// splitPodDir reads kubelet's pod log directory name
// <namespace>_<pod>_<uid>. Namespaces and pod names cannot hold '_'.
func splitPodDir(s string) (ns, pod, uid string, ok bool) {
	f := strings.Split(s, "_")
	if len(f) != 3 || f[0] == "" || f[1] == "" || !isPodUID(f[2]) {
		return "", "", "", false
	}
	return f[0], f[1], f[2], true
}

// splitContainerLog reads kubelet's container log link name
// <pod>_<namespace>_<container>-<id>.log.
func splitContainerLog(s string) (container, id string, ok bool) {
	s, ok = strings.CutSuffix(s, ".log")
	if !ok || len(s) < 66 || s[len(s)-65] != '-' {
		return "", "", false
	}
	id = s[len(s)-64:]
	f := strings.Split(s[:len(s)-65], "_")
	if len(f) != 3 || f[0] == "" || f[1] == "" || f[2] == "" || !isContainerID(id) {
		return "", "", false
	}
	return f[2], id, true
}
