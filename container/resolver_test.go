// SPDX-License-Identifier: Apache-2.0

package container

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// node is a fake node's files: /proc/PID/cgroup, kubelet's log
// directories and a cgroup tree, in a temporary directory.
type node struct {
	t                          *testing.T
	proc, pods, logs, cgroupfs string
}

func newNode(t *testing.T) *node {
	d := t.TempDir()
	n := &node{t: t, proc: d + "/proc", pods: d + "/pods", logs: d + "/containers", cgroupfs: d + "/cgroup"}
	for _, dir := range []string{n.proc, n.pods, n.logs, n.cgroupfs} {
		must(t, os.MkdirAll(dir, 0o755))
	}
	return n
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (n *node) process(pid uint32, cgroup string) {
	dir := filepath.Join(n.proc, strconv.Itoa(int(pid)))
	must(n.t, os.MkdirAll(dir, 0o755))
	must(n.t, os.WriteFile(dir+"/cgroup", []byte(cgroup), 0o644))
}

// pod makes kubelet's log directory of a pod and its containers' links.
func (n *node) pod(ns, name, uid string, containers map[string]string) {
	for cname, id := range containers {
		must(n.t, os.MkdirAll(filepath.Join(n.pods, ns+"_"+name+"_"+uid, cname), 0o755))
		if id != "" {
			must(n.t, os.Symlink(filepath.Join(n.pods, ns+"_"+name+"_"+uid, cname, "0.log"),
				filepath.Join(n.logs, name+"_"+ns+"_"+cname+"-"+id+".log")))
		}
	}
}

func (n *node) resolver() *Resolver {
	return New(Options{ProcRoot: n.proc, PodLogDir: n.pods, ContainerLogDir: n.logs, CgroupRoot: n.cgroupfs})
}

func check(t *testing.T, what string, got *Identity, want *Identity) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil:
		t.Errorf("%s: got %+v, want %+v", what, got, want)
	case *got != *want:
		t.Errorf("%s:\n got %+v\nwant %+v", what, *got, *want)
	}
}

func TestResolverNames(t *testing.T) {
	n := newNode(t)
	n.process(100, "4:memory:/kubepods/besteffort/pod"+uid+"/"+cid+"\n0::/\n")
	n.process(101, "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+uidU+".slice/cri-containerd-"+cid2+".scope\n")
	n.process(102, "0::/system.slice/docker-"+cid2+".scope\n")
	n.process(103, "0::/user.slice/user-0.slice/session-1.scope\n")
	n.process(104, "0::/kubepods/besteffort/pod"+suid+"/"+cid3+"\n")
	n.pod("shop", "cart-7d9f", uid, map[string]string{"app": cid, "sidecar": cid2})
	n.pod("kube-system", "etcd-node1", suid, map[string]string{"etcd": ""})
	r := n.resolver()
	now := time.Unix(1000, 0)
	check(t, "cgroupfs pod", r.Lookup(100, 0, now), &Identity{ContainerID: cid, PodUID: uid, Namespace: "shop", Pod: "cart-7d9f", Container: "app"})
	check(t, "systemd pod", r.Lookup(101, 0, now), &Identity{ContainerID: cid2, Runtime: RuntimeContainerd, PodUID: uid, Namespace: "shop", Pod: "cart-7d9f", Container: "sidecar"})
	check(t, "docker", r.Lookup(102, 0, now), &Identity{ContainerID: cid2, Runtime: RuntimeDocker})
	check(t, "host process", r.Lookup(103, 0, now), nil)
	check(t, "no such process", r.Lookup(999, 0, now), nil)
	check(t, "pid 0", r.Lookup(0, 0, now), nil)
	// A pod with one container directory and no link: that one.
	check(t, "single container", r.Lookup(104, 0, now), &Identity{ContainerID: cid3, PodUID: suid, Namespace: "kube-system", Pod: "etcd-node1", Container: "etcd"})
	if a, b := r.Lookup(100, 0, now), r.Lookup(100, 0, now.Add(time.Second)); a != b {
		t.Errorf("a cached lookup built a new Identity")
	}
	if s := r.Stats(); s.Processes != 6 || s.Pods != 2 || s.Containers != 2 || s.Evictions != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestResolverRefresh(t *testing.T) {
	n := newNode(t)
	const uid2 = "11111111-2222-3333-4444-555555555555"
	n.process(200, "0::/kubepods/besteffort/pod"+uid2+"/"+cid+"\n")
	r := n.resolver()
	t0 := time.Unix(1000, 0)
	check(t, "pod not in the logs yet", r.Lookup(200, 0, t0), &Identity{ContainerID: cid, PodUID: uid2})

	// The pod's log directory appears: named once the entry is read
	// again (TTL), not before (a cached lookup reads nothing).
	n.pod("default", "web-0", uid2, map[string]string{"nginx": cid})
	check(t, "within the TTL", r.Lookup(200, 0, t0.Add(time.Second)), &Identity{ContainerID: cid, PodUID: uid2})
	t1 := t0.Add(DefaultTTL)
	want := &Identity{ContainerID: cid, PodUID: uid2, Namespace: "default", Pod: "web-0", Container: "nginx"}
	check(t, "after the TTL", r.Lookup(200, 0, t1), want)

	// The pid is reused by a host process: seen after the TTL.
	n.process(200, "0::/\n")
	check(t, "reused pid within the TTL", r.Lookup(200, 0, t1.Add(time.Second)), want)
	check(t, "reused pid after the TTL", r.Lookup(200, 0, t1.Add(DefaultTTL)), nil)

	// The pod goes away: its names are dropped at the next full scan.
	must(t, os.RemoveAll(n.pods))
	n.process(201, "0::/kubepods/besteffort/pod"+uid2+"/"+cid+"\n")
	check(t, "pod gone", r.Lookup(201, 0, t1.Add(DefaultTTL+rescanAll)), &Identity{ContainerID: cid, PodUID: uid2})
	if s := r.Stats(); s.Pods != 0 {
		t.Errorf("%d pods still named", s.Pods)
	}
}

func TestResolverBounded(t *testing.T) {
	n := newNode(t)
	for pid := uint32(1); pid <= 100; pid++ {
		n.process(pid, "0::/docker/"+cid+"\n")
	}
	r := New(Options{ProcRoot: n.proc, PodLogDir: n.pods, ContainerLogDir: n.logs, MaxEntries: 16})
	now := time.Unix(1000, 0)
	for pid := uint32(1); pid <= 100; pid++ {
		if r.Lookup(pid, 0, now) == nil {
			t.Fatalf("pid %d: no identity", pid)
		}
	}
	s := r.Stats()
	if s.Processes > 16 {
		t.Errorf("%d processes remembered, limit 16", s.Processes)
	}
	// A full cache forgets down to 13 of 16; every pid forgotten is
	// counted.
	if s.Evictions != uint64(100-s.Processes) || s.Evictions == 0 {
		t.Errorf("evictions %d, want %d", s.Evictions, 100-s.Processes)
	}
	// Past the TTL, old entries go first and are not counted.
	r.Lookup(500, 0, now.Add(DefaultTTL))
	if s2 := r.Stats(); s2.Evictions != s.Evictions || s2.Processes != 1 {
		t.Errorf("after the TTL: %+v", s2)
	}
}

func TestResolverCgroupID(t *testing.T) {
	n := newNode(t)
	dir := filepath.Join(n.cgroupfs, "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"+uidU+".slice/cri-containerd-"+cid+".scope")
	must(t, os.MkdirAll(dir, 0o755))
	must(t, os.MkdirAll(filepath.Join(n.cgroupfs, "system.slice/sshd.service"), 0o755))
	n.pod("shop", "cart-7d9f", uid, map[string]string{"app": cid})
	ino := func(p string) uint64 {
		var st unix.Stat_t
		must(t, unix.Stat(p, &st))
		return st.Ino
	}
	r := n.resolver()
	now := time.Unix(1000, 0)
	want := &Identity{ContainerID: cid, Runtime: RuntimeContainerd, PodUID: uid, Namespace: "shop", Pod: "cart-7d9f", Container: "app"}
	check(t, "by cgroup id", r.Lookup(0, ino(dir), now), want)
	check(t, "pid gone, by cgroup id", r.Lookup(4242, ino(dir), now), want)
	check(t, "host cgroup", r.Lookup(0, ino(filepath.Join(n.cgroupfs, "system.slice/sshd.service")), now), nil)
	check(t, "root cgroup", r.Lookup(0, 1, now), nil)

	// A new container's cgroup is found by the next walk, not before.
	dir2 := filepath.Join(n.cgroupfs, "docker/"+cid2)
	must(t, os.MkdirAll(dir2, 0o755))
	check(t, "before the next walk", r.Lookup(0, ino(dir2), now.Add(time.Second)), nil)
	check(t, "after it", r.Lookup(0, ino(dir2), now.Add(walkEvery+time.Second)), &Identity{ContainerID: cid2, Runtime: RuntimeDocker})
}

// TestResolverThisProcess reads the real /proc: what it says of this
// test's own process is what its /proc/self/cgroup says.
func TestResolverThisProcess(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	must(t, err)
	p := ParseProcCgroup(b)
	id := New(Options{}).Lookup(uint32(os.Getpid()), 0, time.Now())
	if (id != nil) != p.InContainer() || id != nil && id.ContainerID != p.ID {
		t.Errorf("got %+v for %+v", id, p)
	}
}

func TestFilter(t *testing.T) {
	a := &Identity{ContainerID: cid, PodUID: uid, Namespace: "shop", Pod: "cart", Container: "app"}
	unnamed := &Identity{ContainerID: cid, PodUID: uid}
	docker := &Identity{ContainerID: cid, Runtime: RuntimeDocker}
	for _, tc := range []struct {
		f    Filter
		id   *Identity
		want bool
	}{
		{Filter{}, nil, true},
		{Filter{}, docker, true},
		{Filter{Namespaces: []string{"shop"}}, a, true},
		{Filter{Namespaces: []string{"other", "shop"}}, a, true},
		{Filter{Namespaces: []string{"other"}}, a, false},
		{Filter{Namespaces: []string{"shop"}}, nil, false},
		{Filter{Namespaces: []string{"shop"}}, docker, false},
		{Filter{Namespaces: []string{"shop"}}, unnamed, false},
		{Filter{Pods: []string{"cart"}}, a, true},
		{Filter{Pods: []string{"shop/cart"}}, a, true},
		{Filter{Pods: []string{"other/cart"}}, a, false},
		{Filter{Pods: []string{uid}}, a, true},
		{Filter{Pods: []string{uid}}, unnamed, true},
		{Filter{Pods: []string{"cart"}}, unnamed, false},
		{Filter{Pods: []string{"car"}}, a, false},
		{Filter{Namespaces: []string{"shop"}, Pods: []string{"cart"}}, a, true},
		{Filter{Namespaces: []string{"other"}, Pods: []string{"cart"}}, a, false},
	} {
		if got := tc.f.Match(tc.id); got != tc.want {
			t.Errorf("%+v.Match(%+v) = %v, want %v", tc.f, tc.id, got, tc.want)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"default", "kube-system", "web-0", "a", "my.pod-1", uid} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Default", "web_0", "-web", "web-", ".x", "a b", "ns/pod/x", string(make([]byte, 254))} {
		if err := CheckName(bad); err == nil {
			t.Errorf("CheckName(%q) accepted", bad)
		}
	}
}

func TestSplitNames(t *testing.T) {
	if ns, pod, u, ok := splitPodDir("kube-system_coredns-5d78c9869d-abcde_" + uid); !ok || ns != "kube-system" || pod != "coredns-5d78c9869d-abcde" || u != uid {
		t.Errorf("splitPodDir: %q %q %q %v", ns, pod, u, ok)
	}
	for _, bad := range []string{"", "a_b", "a_b_c", "a_b_c_" + uid, "_b_" + uid, "a__" + uid} {
		if _, _, _, ok := splitPodDir(bad); ok {
			t.Errorf("splitPodDir(%q) accepted", bad)
		}
	}
	if c, id, ok := splitContainerLog("coredns-abc_kube-system_coredns-" + cid + ".log"); !ok || c != "coredns" || id != cid {
		t.Errorf("splitContainerLog: %q %q %v", c, id, ok)
	}
	for _, bad := range []string{"", ".log", "a_b_c-" + cid, "a_b-" + cid + ".log", "a_b_c_d-" + cid + ".log", "a_b_c" + cid + ".log", "a_b_-" + cid + ".log", "a_b_c-" + cid[:63] + "z.log"} {
		if _, _, ok := splitContainerLog(bad); ok {
			t.Errorf("splitContainerLog(%q) accepted", bad)
		}
	}
}

// BenchmarkLookupCached is the cost per event: a cached answer.
func BenchmarkLookupCached(b *testing.B) {
	d := b.TempDir()
	must(b, os.MkdirAll(d+"/proc/100", 0o755))
	must(b, os.WriteFile(d+"/proc/100/cgroup", []byte("0::/kubepods/besteffort/pod"+uid+"/"+cid+"\n"), 0o644))
	r := New(Options{ProcRoot: d + "/proc", PodLogDir: d, ContainerLogDir: d})
	now := time.Unix(1000, 0)
	r.Lookup(100, 0, now)
	b.ReportAllocs()
	for b.Loop() {
		if r.Lookup(100, 0, now) == nil {
			b.Fatal("no identity")
		}
	}
}

// TestResolverConcurrent: the metrics collector asks from its scrapes while
// events come in (go test -race).
func TestResolverConcurrent(t *testing.T) {
	n := newNode(t)
	n.process(1, "0::/kubepods/besteffort/pod"+uid+"/"+cid+"\n")
	n.pod("shop", "cart", uid, map[string]string{"app": cid})
	r := n.resolver()
	start := time.Unix(1000, 0)
	done := make(chan bool)
	for g := range 4 {
		go func() {
			defer func() { done <- true }()
			for i := range 2000 {
				// Past the TTL and the rescans now and then.
				now := start.Add(time.Duration(g*2000+i) * 20 * time.Millisecond)
				if id := r.Lookup(1, 0, now); id == nil || id.Pod != "cart" {
					t.Errorf("lookup %d: %+v", i, id)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}
