// SPDX-License-Identifier: Apache-2.0

package snapshot

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// NetNSCookie returns the cookie of the network namespace file at path
// (/run/netns/NAME or /proc/PID/ns/net): unlike its inode number, which a
// new namespace gets once the old one is gone, it is never reused. 0 with
// no error on kernels before 5.14, which have none.
func NetNSCookie(path string) (uint64, error) {
	type result struct {
		cookie uint64
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		// Only this locked thread enters the namespace; if it cannot
		// come back it stays locked, so that the Go runtime ends it.
		runtime.LockOSThread()
		cookie, restored, err := netnsCookieLocked(path)
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{cookie, err}
	}()
	r := <-ch
	return r.cookie, r.err
}

func netnsCookieLocked(path string) (cookie uint64, restored bool, err error) {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, true, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer unix.Close(target)
	if t, err := unix.IoctlRetInt(target, unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		return 0, true, fmt.Errorf("%s is not a network namespace file", path)
	}
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, true, fmt.Errorf("open our network namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return 0, true, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		unix.Close(fd)
		if errors.Is(err, unix.ENOPROTOOPT) {
			cookie, err = 0, nil // before 5.14
		}
	}
	if err2 := unix.Setns(orig, unix.CLONE_NEWNET); err2 != nil {
		return 0, false, fmt.Errorf("return to our network namespace: %w", err2)
	}
	if err != nil {
		return 0, true, fmt.Errorf("read the cookie of network namespace %s: %w", path, err)
	}
	return cookie, true, nil
}

// NetNSAlive reports whether the network namespace with this inode and
// cookie still exists: some process is in it or some file (/run/netns)
// names it. path is tried first; a namespace held only by an open file
// descriptor elsewhere counts as gone. With cookie 0 (kernels before 5.14)
// the inode alone decides.
//
// Running out of file descriptors (EMFILE, ENFILE) is an error, not
// "gone": a file that could not be opened may still name the namespace.
func NetNSAlive(path string, inode uint32, cookie uint64) (bool, error) {
	same := func(p string) (bool, error) {
		if ino, err := netnsOf(p); err != nil || ino != inode {
			return false, nil
		}
		if cookie == 0 {
			return true, nil
		}
		c, err := NetNSCookie(p)
		if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
			return false, err
		}
		return err == nil && c == cookie, nil
	}
	if ok, err := same(path); ok || err != nil {
		return ok, err
	}
	spaces, err := NetNamespaces()
	if err != nil {
		return false, err
	}
	for _, ns := range spaces {
		if ns.Inode != inode {
			continue
		}
		if ok, err := same(ns.Path); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// NetNS is a network namespace and a file through which it can be
// entered.
type NetNS struct {
	Inode uint32
	Path  string // /run/netns/NAME or /proc/PID/ns/net
	// more paths to the same namespace, tried in turn when Path has gone
	// away (its process ended)
	alt []string
}

// NetNamespaces lists the distinct network namespaces of the host: those
// of every process (/proc/PID/ns/net) and those named with ip-netns
// (/run/netns/NAME), by inode, the namespace of this process first.
func NetNamespaces() ([]NetNS, error) {
	var out []NetNS
	index := map[uint32]int{}
	add := func(path string) {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			return
		}
		ino := uint32(st.Ino)
		if i, ok := index[ino]; ok {
			if len(out[i].alt) < 4 {
				out[i].alt = append(out[i].alt, path)
			}
			return
		}
		index[ino] = len(out)
		out = append(out, NetNS{Inode: ino, Path: path})
	}
	add(procRoot + "/self/ns/net")
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			add("/run/netns/" + e.Name())
		}
	}
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	for _, name := range names {
		if _, err := strconv.ParseUint(name, 10, 32); err == nil {
			add(procRoot + "/" + name + "/ns/net")
		}
	}
	if len(out) == 0 {
		return nil, errors.New("list network namespaces: cannot read /proc/self/ns/net")
	}
	return out, nil
}

// netnsOf returns the inode of the network namespace file at path, which
// may be a bind mount (/run/netns/NAME) or /proc/PID/ns/net.
func netnsOf(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return uint32(st.Ino), nil
}
