// SPDX-License-Identifier: Apache-2.0

package snapshot

import (
	"os/exec"
	"testing"

	"github.com/tcpstate/tcpstate/internal/testenv"
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
	ns := testenv.NewNetns(t)
	name, path := ns.Name, ns.Path
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
	if alive, err := NetNSAlive(path, inode, cookie); err != nil || alive {
		t.Errorf("NetNSAlive after deletion: %v, %v; want gone", alive, err)
	}
}
