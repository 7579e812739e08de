// SPDX-License-Identifier: Apache-2.0

package snapshot

import (
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSocketInodeParse(t *testing.T) {
	for in, want := range map[string]uint64{"socket:[12345]": 12345, "socket:[0]": 0, "socket:[4294967295]": 4294967295} {
		if got, ok := socketInode([]byte(in)); !ok || got != want {
			t.Errorf("%q: %d %v", in, got, ok)
		}
	}
	for _, in := range []string{"pipe:[12]", "socket:[]", "socket:[12", "socket:[1a]", "/dev/null", "anon_inode:[eventpoll]"} {
		if _, ok := socketInode([]byte(in)); ok {
			t.Errorf("%q parsed as a socket", in)
		}
	}
}

// The /proc scan finds this process's own socket on the right fd, twice
// once the fd is duplicated.
func TestSocketOwnersOfOurSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	owners, err := socketOwners(map[uint64]bool{st.Ino: true})
	if err != nil {
		t.Fatal(err)
	}
	got := owners[st.Ino]
	if len(owners) != 1 || len(got) < 2 {
		t.Fatalf("owners %v, want ours on two fds", owners)
	}
	fds := map[int32]bool{}
	for _, o := range got {
		if o.Pid != uint32(os.Getpid()) || o.Comm != commOfSelf(t) {
			t.Errorf("owner %+v, want pid %d", o, os.Getpid())
		}
		fds[o.FD] = true
	}
	if !fds[int32(f.Fd())] {
		t.Errorf("owners %v lack fd %d", got, f.Fd())
	}
}

func commOfSelf(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// SocketOwners gives the same holders, fd by fd.
func TestSocketOwnersWalk(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	fds := map[int32]bool{}
	lastPid := uint32(0)
	err = SocketOwners(func(inode uint64, o Owner) error {
		if o.Pid < lastPid {
			t.Errorf("pid %d after %d", o.Pid, lastPid)
		}
		lastPid = o.Pid
		if inode == st.Ino {
			if o.Pid != uint32(os.Getpid()) || o.Comm != commOfSelf(t) {
				t.Errorf("owner %+v, want pid %d", o, os.Getpid())
			}
			fds[o.FD] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) < 2 || !fds[int32(f.Fd())] {
		t.Errorf("our socket on fds %v, want two with %d", fds, f.Fd())
	}
}
