// SPDX-License-Identifier: Apache-2.0

package container

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/internal/testenv"
)

// TestRealKubeletCgroup moves a real process into a cgroup of kubelet's
// cgroupfs layout (/kubepods/besteffort/pod<uid>/<id>, in a cgroup v1
// hierarchy on a hybrid host, or in cgroup v2) and reads it back through
// the real /proc, by pid and, on cgroup v2, by the cgroup's id.
func TestRealKubeletCgroup(t *testing.T) {
	testenv.RequireRoot(t)
	root, v2 := cgroupMount(t)
	id := strings.Repeat("7e", 32)
	u := fmt.Sprintf("0badc0de-1234-4abc-8def-%012x", time.Now().UnixNano()&(1<<48-1))
	podDir := filepath.Join(root, "kubepods", "besteffort", "pod"+u)
	dir := filepath.Join(podDir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range []string{dir, podDir, filepath.Dir(podDir), filepath.Join(root, "kubepods")} {
			os.Remove(d) // only what is empty; another test's pods stay
		}
	})
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(logs, "pods", "shop_cart_"+u, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(logs, "containers"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("x", filepath.Join(logs, "containers", "cart_shop_app-"+id+".log")); err != nil {
		t.Fatal(err)
	}
	o := Options{PodLogDir: filepath.Join(logs, "pods"), ContainerLogDir: filepath.Join(logs, "containers")}
	if v2 {
		o.CgroupRoot = root
	}
	r := New(o)
	want := Identity{ContainerID: id, PodUID: u, Namespace: "shop", Pod: "cart", Container: "app"}
	got := r.Lookup(uint32(cmd.Process.Pid), 0, time.Now())
	if got == nil || *got != want {
		t.Fatalf("by pid: got %+v, want %+v", got, want)
	}
	if v2 {
		var st unix.Stat_t
		must(t, unix.Stat(dir, &st))
		if got := r.Lookup(0, st.Ino, time.Now()); got == nil || *got != want {
			t.Errorf("by cgroup id %d: got %+v, want %+v", st.Ino, got, want)
		}
	}
}

// cgroupMount finds a hierarchy to make cgroups in: cgroup v1's memory
// controller on a hybrid host, else the cgroup v2 root.
func cgroupMount(t *testing.T) (string, bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	v2 := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		_, rest, ok := strings.Cut(line, " - ")
		if len(f) < 5 || !ok {
			continue
		}
		switch {
		case strings.HasPrefix(rest, "cgroup ") && strings.Contains(rest, "memory"):
			return f[4], false
		case strings.HasPrefix(rest, "cgroup2 ") && v2 == "":
			v2 = f[4]
		}
	}
	if v2 == "" {
		t.Fatal("no cgroup hierarchy mounted")
	}
	return v2, true
}
