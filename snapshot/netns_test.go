// SPDX-License-Identifier: Apache-2.0

package snapshot

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
)

func TestNetNamespacesOursFirst(t *testing.T) {
	spaces, err := NetNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	own, err := netnsOf("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if len(spaces) == 0 || spaces[0].Inode != own {
		t.Fatalf("namespaces %v, want ours (%d) first", spaces, own)
	}
	seen := map[uint32]bool{}
	for _, ns := range spaces {
		if seen[ns.Inode] {
			t.Errorf("namespace %d listed twice", ns.Inode)
		}
		seen[ns.Inode] = true
	}
}

// A namespace named in /run/netns is alive, by inode and cookie, until
// it is deleted.
func TestNetNSAlive(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("privileged test: CI must run it as root")
		}
		t.Skip("privileged test: run as root (sudo make test)")
	}
	name := fmt.Sprintf("tcpstate-test-%d", rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			exec.Command("ip", "netns", "del", name).Run()
		}
	})
	path := "/run/netns/" + name
	inode, err := netnsOf(path)
	if err != nil {
		t.Fatal(err)
	}
	cookie, err := NetNSCookie(path)
	if err != nil {
		t.Fatal(err)
	}
	own, err := NetNSCookie("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if cookie == own && cookie != 0 {
		t.Errorf("cookie %d, the same as our namespace's", cookie)
	}
	if alive, err := NetNSAlive(path, inode, cookie); err != nil || !alive {
		t.Errorf("NetNSAlive: %v, %v; want alive", alive, err)
	}
	if cookie != 0 {
		if alive, err := NetNSAlive(path, inode, cookie+1); err != nil || alive {
			t.Errorf("NetNSAlive with another cookie: %v, %v; want gone", alive, err)
		}
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	deleted = true
	if alive, err := NetNSAlive(path, inode, cookie); err != nil || alive {
		t.Errorf("NetNSAlive after deletion: %v, %v; want gone", alive, err)
	}
}
