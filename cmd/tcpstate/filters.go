// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/container"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// filterFlags are the selection flags shared by the commands that look at
// sockets.
type filterFlags struct {
	ipv4, ipv6     bool
	pids, comms    []string
	lports, rports []string
	laddrs, raddrs []string
	states         []string
	cgroup         string
	netns          string
	// namespaces and pods select by the owner's pod, in user space;
	// options checks them into pods.
	namespaces, podNames []string
	pods                 container.Filter
	// hollow attaches programs that do nothing: the cost of the hooks
	// alone, for the benchmark (hidden).
	hollow bool
	// hooks chooses how accepted sockets get their owner (tracer.Hooks).
	hooks string
	// resolver names the containers and pods of owners; made on first
	// use, one per command.
	res *container.Resolver
	// netnsPath is the file through which the namespace of --netns can
	// be entered (--netns itself, or the file found for its inode); set
	// by options.
	netnsPath string
	// set is the flag set the flags were registered in, to tell a flag
	// given an empty value from one not given.
	set *pflag.FlagSet
}

func (f *filterFlags) register(fs *pflag.FlagSet) {
	f.set = fs
	fs.BoolVarP(&f.ipv4, "ipv4", "4", false, "only IPv4 sockets, with IPv6 sockets of IPv4-mapped addresses (::ffff:a.b.c.d, shown as a.b.c.d: a dual-stack server's IPv4 clients)")
	fs.BoolVarP(&f.ipv6, "ipv6", "6", false, "only IPv6 sockets, without those of IPv4-mapped addresses")
	fs.StringSliceVar(&f.pids, "pid", nil, "only sockets owned by these process ids (comma-separated)")
	fs.StringSliceVar(&f.comms, "comm", nil, "only sockets owned by processes with these names (comma-separated, as in /proc/PID/comm)")
	fs.StringSliceVar(&f.lports, "lport", nil, "only these local ports (comma-separated, 1-65535)")
	fs.StringSliceVar(&f.rports, "rport", nil, "only these remote ports (comma-separated, 1-65535)")
	fs.StringSliceVar(&f.laddrs, "laddr", nil, "only these local addresses or CIDR prefixes (comma-separated)")
	fs.StringSliceVar(&f.raddrs, "raddr", nil, "only these remote addresses or CIDR prefixes (comma-separated)")
	fs.StringSliceVar(&f.states, "state", nil, "only transitions into or out of these states (e.g. CLOSE_WAIT,fin-wait-2)")
	fs.StringVar(&f.cgroup, "cgroup", "", "only sockets of this cgroup v2 directory or below it (e.g. /sys/fs/cgroup/system.slice/nginx.service)")
	fs.StringVar(&f.netns, "netns", "", "only this network namespace: its file (/run/netns/NAME, /proc/PID/ns/net) or the inode number of one in use")
	fs.StringSliceVar(&f.namespaces, "namespace", nil, "only sockets of processes in pods of these Kubernetes namespaces (comma-separated)")
	fs.StringSliceVar(&f.podNames, "pod", nil, "only sockets of processes in these Kubernetes pods: NAME, NAMESPACE/NAME or pod uid (comma-separated)")
	fs.BoolVar(&f.hollow, "hollow", false, "attach programs that return at once and show nothing: what the hooks alone cost (for the benchmark)")
	_ = fs.MarkHidden("hollow")
	fs.StringVar(&f.hooks, "hooks", "auto", "how an accepted socket gets its owner: fentry (fexit on inet_csk_accept, from accept() on), tracepoint (from its first close() or shutdown() on; no hook beyond TCP's tracepoints), or auto (fentry where the kernel allows it)")
}

// parseHooks checks --hooks.
func parseHooks(s string) (tracer.Hooks, error) {
	switch s {
	case "auto", "":
		return tracer.HooksAuto, nil
	case "fentry", "tracepoint":
		return tracer.Hooks(s), nil
	}
	return "", usagef("invalid --hooks %q: want auto, fentry or tracepoint", s)
}

// resolver returns the command's container.Resolver.
func (f *filterFlags) resolver() *container.Resolver {
	if f.res == nil {
		f.res = container.New(container.Options{CgroupRoot: snapshot.Cgroup2Root()})
	}
	return f.res
}

// podFilter checks --namespace and --pod.
func (f *filterFlags) podFilter() (container.Filter, error) {
	var pf container.Filter
	for _, s := range f.namespaces {
		s = strings.TrimSpace(s)
		if err := container.CheckName(s); err != nil {
			return pf, usagef("invalid --namespace %q: %v", s, err)
		}
		pf.Namespaces = append(pf.Namespaces, s)
	}
	for _, s := range f.podNames {
		s = strings.TrimSpace(s)
		ns, name, qualified := strings.Cut(s, "/")
		if !qualified {
			name = ns
		}
		if err := container.CheckName(name); err != nil {
			return pf, usagef("invalid --pod %q: %v", s, err)
		}
		if qualified {
			if err := container.CheckName(ns); err != nil {
				return pf, usagef("invalid --pod %q: namespace: %v", s, err)
			}
		}
		pf.Pods = append(pf.Pods, s)
	}
	if len(pf.Namespaces)+len(pf.Pods) > maxPodFilters {
		return pf, usagef("invalid --namespace/--pod: at most %d names in all", maxPodFilters)
	}
	return pf, nil
}

// kubeletPods is where kubelet keeps its pods' logs, a directory
// NAMESPACE_NAME_UID per pod.
const kubeletPods = "/var/log/pods"

// podsKnown reports whether kubelet's logs name a pod: a Kubernetes node
// with pods, where pod labels are on by default.
func podsKnown() bool {
	d, err := os.Open(kubeletPods)
	if err != nil {
		return false
	}
	defer d.Close()
	names, _ := d.Readdirnames(256)
	for _, n := range names {
		if strings.Count(n, "_") >= 2 {
			return true
		}
	}
	return false
}

// sayNoPods says on stderr that --pod and --namespace can match nothing
// when no pod is known on this host.
func (f *filterFlags) sayNoPods(stderr io.Writer) {
	if !f.pods.Empty() && !podsKnown() {
		fmt.Fprintf(stderr, "tcpstate: no Kubernetes pods are known on this host (kubelet's %s names none): --namespace and --pod match no socket\n", kubeletPods)
	}
}

// maxPodFilters bounds --namespace and --pod: each is compared with every
// owner's names.
const maxPodFilters = 64

// matchPod says whether the owner pid (or, failing that, the socket's
// cgroup) is in a pod --namespace and --pod select.
func (f *filterFlags) matchPod(pid uint32, cgroupID uint64, now time.Time) bool {
	return f.pods.Empty() || f.pods.Match(f.resolver().Lookup(pid, cgroupID, now))
}

// matchHolders is matchPod for a snapshot's socket: any holder, or the
// socket's cgroup when nobody holds it.
func (f *filterFlags) matchHolders(s *snapshot.Socket) bool {
	for _, o := range s.Owners {
		if f.matchPod(o.Pid, s.CgroupID, s.Seen) {
			return true
		}
	}
	return len(s.Owners) == 0 && f.matchPod(0, s.CgroupID, s.Seen)
}

// holderIdentity is the container and pod of a snapshot's socket: its
// first holder's in one, else its cgroup's.
func (f *filterFlags) holderIdentity(s *snapshot.Socket) *container.Identity {
	res := f.resolver()
	for _, o := range s.Owners {
		if id := res.Lookup(o.Pid, 0, s.Seen); id != nil {
			return id
		}
	}
	return res.Lookup(0, s.CgroupID, s.Seen)
}

// reportResolver says on stderr what the resolver had to forget.
func (f *filterFlags) reportResolver(stderr io.Writer) {
	if f.res == nil {
		return
	}
	st := f.res.Stats()
	if st.Evictions > 0 {
		fmt.Fprintf(stderr, "tcpstate: %d processes' and cgroups' containers forgotten before their time and read again (cache full: %d entries)\n",
			st.Evictions, container.DefaultMaxEntries)
	}
	if st.NamesDropped > 0 {
		fmt.Fprintf(stderr, "tcpstate: %d pods or containers left unnamed (more than %d in kubelet's logs)\n", st.NamesDropped, 1<<16)
	}
}

// options validates the flags and turns them into tracer options. Every
// error is a usage error naming the flag.
func (f *filterFlags) options() (tracer.Options, error) {
	o := tracer.Options{Filter: tcp.Filter{IPv4: f.ipv4, IPv6: f.ipv6}, Hollow: f.hollow}
	if err := f.checkEmpty(); err != nil {
		return o, err
	}
	var err error
	if o.Hooks, err = parseHooks(f.hooks); err != nil {
		return o, err
	}
	for _, s := range f.pids {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
		if err != nil || n == 0 {
			return o, usagef("invalid --pid %q: want a process id, a positive number", s)
		}
		o.PIDs = append(o.PIDs, uint32(n))
	}
	if len(o.PIDs) > tracer.MaxPIDs {
		return o, usagef("invalid --pid: at most %d process ids", tracer.MaxPIDs)
	}
	for _, s := range f.comms {
		s = strings.TrimSpace(s)
		if s == "" || len(s) > 15 {
			return o, usagef("invalid --comm %q: want a process name of 1 to 15 bytes", s)
		}
		o.Comms = append(o.Comms, s)
	}
	if len(o.Comms) > tracer.MaxComms {
		return o, usagef("invalid --comm: at most %d names", tracer.MaxComms)
	}
	if o.LPorts, err = parsePorts("lport", f.lports); err != nil {
		return o, err
	}
	if o.RPorts, err = parsePorts("rport", f.rports); err != nil {
		return o, err
	}
	if o.LAddrs, err = parsePrefixes("laddr", f.laddrs); err != nil {
		return o, err
	}
	if o.RAddrs, err = parsePrefixes("raddr", f.raddrs); err != nil {
		return o, err
	}
	if err := checkFamilyPrefixes(&o.Filter); err != nil {
		return o, err
	}
	for _, s := range f.states {
		st, err := tcp.ParseState(s)
		if err != nil {
			return o, usagef("invalid --state %q: want one of %s", s, stateList())
		}
		o.States = append(o.States, st)
	}
	if f.cgroup != "" {
		if o.CgroupID, err = cgroupID(f.cgroup); err != nil {
			return o, err
		}
	}
	if f.pods, err = f.podFilter(); err != nil {
		return o, err
	}
	f.netnsPath = ""
	if f.netns != "" {
		if o.NetNS, f.netnsPath, err = resolveNetns(f.netns); err != nil {
			return o, err
		}
	}
	return o, nil
}

// checkDuration refuses a --duration that is negative, or 0 when given:
// 0 is the default, until Ctrl-C, which -d 0 hardly means.
func (f *filterFlags) checkDuration(d time.Duration) error {
	if d < 0 || d == 0 && f.set != nil && f.set.Changed("duration") {
		return usagef("invalid --duration %s: must be positive; leave it out to run until Ctrl-C", d)
	}
	return nil
}

// checkEmpty refuses a filter flag given an empty value (--lport ""):
// it would otherwise mean no filter at all, silently.
func (f *filterFlags) checkEmpty() error {
	if f.set == nil {
		return nil
	}
	empty := map[string]bool{
		"pid": len(f.pids) == 0, "comm": len(f.comms) == 0,
		"lport": len(f.lports) == 0, "rport": len(f.rports) == 0,
		"laddr": len(f.laddrs) == 0, "raddr": len(f.raddrs) == 0,
		"state": len(f.states) == 0, "cgroup": f.cgroup == "", "netns": f.netns == "",
		"namespace": len(f.namespaces) == 0, "pod": len(f.podNames) == 0,
	}
	for _, name := range []string{"pid", "comm", "lport", "rport", "laddr", "raddr", "state", "cgroup", "netns", "namespace", "pod"} {
		if empty[name] && f.set.Changed(name) {
			return usagef("invalid --%s: empty value; give a value, or leave --%s out for no filter", name, name)
		}
	}
	return nil
}

func parsePorts(flag string, list []string) ([]uint16, error) {
	var out []uint16
	for _, s := range list {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
		if err != nil || n == 0 {
			return nil, usagef("invalid --%s %q: ports are 1-65535", flag, s)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

func parsePrefixes(flag string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "%") {
			return nil, usagef("invalid --%s %q: an address with a zone (%%eth0) matches no socket, as sockets are matched by address alone; give it without the zone", flag, s)
		}
		var p netip.Prefix
		if strings.Contains(s, "/") {
			pp, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, usagef("invalid --%s %q: want an address or CIDR prefix such as 10.0.0.0/8 or fd00::/64", flag, s)
			}
			p = pp
		} else {
			a, err := netip.ParseAddr(strings.Trim(s, "[]"))
			if err != nil {
				return nil, usagef("invalid --%s %q: want an address or CIDR prefix such as 10.0.0.0/8 or fd00::/64", flag, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			// An IPv4-mapped prefix means the IPv4 one, as we print it;
			// one shorter than /96 also covers IPv6 addresses and cannot
			// be matched as given.
			if p.Bits() < 96 {
				return nil, usagef("invalid --%s %q: an IPv4-mapped prefix must be /96 or longer; give the IPv4 prefix instead (such as 10.0.0.0/8, or 0.0.0.0/0 for every IPv4 address)", flag, s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	if len(out) > tracer.MaxPrefixes {
		return nil, usagef("invalid --%s: at most %d prefixes", flag, tracer.MaxPrefixes)
	}
	return out, nil
}

// checkFamilyPrefixes refuses -4 or -6 with an address list none of
// whose prefixes can be of that family: nothing would ever match.
func checkFamilyPrefixes(o *tcp.Filter) error {
	if o.IPv4 == o.IPv6 {
		return nil
	}
	for i, list := range [][]netip.Prefix{o.LAddrs, o.RAddrs} {
		flag := [...]string{"laddr", "raddr"}[i]
		if len(list) > 0 && !slices.ContainsFunc(list, func(p netip.Prefix) bool { return p.Addr().Is4() == o.IPv4 }) {
			fam, short := "IPv4", "-4"
			if o.IPv6 {
				fam, short = "IPv6", "-6"
			}
			return usagef("invalid --%s with %s: none of its prefixes is %s, so nothing would match", flag, short, fam)
		}
	}
	return nil
}

func stateList() string {
	names := make([]string, 0, 12)
	for _, s := range tcp.States() {
		names = append(names, s.String())
	}
	return strings.Join(names, ", ")
}

// cgroupID returns the id of a cgroup v2 directory: its inode number.
// A relative path is taken below the cgroup v2 mount.
func cgroupID(path string) (uint64, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(snapshot.Cgroup2Root(), path)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return 0, usagef("invalid --cgroup %q: %v", path, err)
	}
	if sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, usagef("invalid --cgroup %q: not a cgroup v2 directory", path)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, usagef("invalid --cgroup %q: %v", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, usagef("invalid --cgroup %q: not a directory", path)
	}
	return st.Ino, nil
}

// nsTypes names the namespace types NS_GET_NSTYPE reports, for errors.
var nsTypes = map[int]string{
	unix.CLONE_NEWNS: "mount", unix.CLONE_NEWUTS: "UTS", unix.CLONE_NEWIPC: "IPC",
	unix.CLONE_NEWUSER: "user", unix.CLONE_NEWPID: "PID", unix.CLONE_NEWCGROUP: "cgroup",
	unix.CLONE_NEWTIME: "time",
}

const netnsWant = "give a network namespace file (/run/netns/NAME, /proc/PID/ns/net) or the inode number of one"

// resolveNetns checks --netns and returns the namespace's inode and a file
// through which it can be entered. A path must be a network namespace
// file; a bare number must be the inode of a network namespace that a
// process is in or that /run/netns names.
func resolveNetns(s string) (uint32, string, error) {
	if s != "" && strings.Trim(s, "0123456789") == "" {
		n, err := strconv.ParseUint(s, 10, 32)
		if err == nil && n > 0 {
			spaces, err := snapshot.NetNamespaces()
			if err != nil {
				return 0, "", err
			}
			for _, ns := range spaces {
				if uint64(ns.Inode) == n {
					return ns.Inode, ns.Path, nil
				}
			}
		}
		return 0, "", usagef("invalid --netns %q: no network namespace with this inode is in use by a process or named in /run/netns; "+
			"give the namespace's file instead (/run/netns/NAME, /proc/PID/ns/net)", s)
	}
	var st unix.Stat_t
	if err := unix.Stat(s, &st); err != nil {
		return 0, "", usagef("invalid --netns %q: %v", s, err)
	}
	// Namespace files are regular files of nsfs; opening anything else
	// (a device, a FIFO) could have effects.
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, "", usagef("invalid --netns %q: not a network namespace file; %s", s, netnsWant)
	}
	fd, err := unix.Open(s, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return 0, "", usagef("invalid --netns %q: %v", s, err)
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil || sfs.Type != unix.NSFS_MAGIC {
		return 0, "", usagef("invalid --netns %q: not a network namespace file; %s", s, netnsWant)
	}
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return 0, "", usagef("invalid --netns %q: not a network namespace file (%v); %s", s, err, netnsWant)
	}
	if typ != unix.CLONE_NEWNET {
		what := nsTypes[typ]
		if what == "" {
			what = "another"
		}
		return 0, "", usagef("invalid --netns %q: a %s namespace, not a network namespace; %s", s, what, netnsWant)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, "", usagef("invalid --netns %q: %v", s, err)
	}
	return uint32(st.Ino), s, nil
}
