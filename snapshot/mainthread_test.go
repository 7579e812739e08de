// SPDX-License-Identifier: Apache-2.0

package snapshot

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/internal/testenv"
	"github.com/tcpstate/tcpstate/tcp"
)

// mainThreadNetnsEnv, when set, names a network namespace this test
// binary moves its main thread into, to snapshot it from another thread
// (see TestSnapshotWithMainThreadElsewhere).
const mainThreadNetnsEnv = "TCPSTATE_TEST_MAIN_THREAD_NETNS"

func init() {
	if os.Getenv(mainThreadNetnsEnv) != "" {
		// init runs on the main thread: keep the main goroutine on it.
		runtime.LockOSThread()
	}
}

func TestMain(m *testing.M) {
	if path := os.Getenv(mainThreadNetnsEnv); path != "" {
		if err := snapshotFromAnotherThread(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// snapshotFromAnotherThread moves the main thread into the namespace at
// path and opens a listener there, then snapshots that namespace from
// another thread, which is still in ours: the listener must be in it.
// (A test helper that ended locked to the main thread in another
// namespace left /proc/self/ns/net naming that namespace, and snapshots
// of it read our own: TestListenDrops, one run in twenty.)
func snapshotFromAnotherThread(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	err = unix.Setns(fd, unix.CLONE_NEWNET)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("enter %s: %w", path, err)
	}
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	if err := unix.Listen(ln, 1); err != nil {
		return err
	}
	sa, err := unix.Getsockname(ln)
	if err != nil {
		return err
	}
	port := uint16(sa.(*unix.SockaddrInet4).Port)
	inode, err := netnsOf(path)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { // on another thread: the main one is locked to this goroutine's caller
		var seen []string
		found := false
		err := Snapshot(Options{Filter: tcp.Filter{NetNS: inode, States: []tcp.State{tcp.Listen}}, NetNSPath: path},
			func(s *Socket) error {
				seen = append(seen, fmt.Sprintf("%v:%d", s.LAddr, s.LPort))
				found = found || s.LPort == port
				return nil
			})
		if err == nil && !found {
			err = fmt.Errorf("listener 127.0.0.1:%d not in the snapshot of %s, which lists %s", port, path, strings.Join(seen, " "))
		}
		errc <- err
	}()
	return <-errc
}

func TestSnapshotWithMainThreadElsewhere(t *testing.T) {
	ns := testenv.NewNetns(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), mainThreadNetnsEnv+"="+ns.Path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}
