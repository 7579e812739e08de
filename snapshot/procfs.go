// SPDX-License-Identifier: Apache-2.0

package snapshot

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// This file reads which processes hold which sockets, as ss -p finds
// them: from the socket inodes in /proc/PID/fd.

const procRoot = "/proc"

// socketFD is one file descriptor of a process that refers to a socket.
type socketFD struct {
	FD    int32
	Inode uint64
}

// procSockets is a process and the sockets it holds, in fd order.
type procSockets struct {
	Pid     uint32
	Sockets []socketFD
	dir     string
	comm    string
	commErr error
	commSet bool
}

// Comm reads the process name from /proc/PID/comm, once. It fails when
// the process has gone away.
func (p *procSockets) Comm() (string, error) {
	if !p.commSet {
		p.commSet = true
		b, err := os.ReadFile(p.dir + "/comm")
		if err != nil {
			p.commErr = err
		} else {
			p.comm = strings.TrimSuffix(string(b), "\n")
		}
	}
	return p.comm, p.commErr
}

// walkSocketFDs calls visit for every process that holds at least one
// socket. Processes that go away meanwhile, and kernel threads, are
// skipped. The procSockets passed to visit is reused: keep nothing of it
// but copies.
func walkSocketFDs(visit func(p *procSockets) error) error {
	d, err := os.Open(procRoot)
	if err != nil {
		return fmt.Errorf("read %s: %w", procRoot, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", procRoot, err)
	}
	pids := make([]uint32, 0, len(names))
	for _, name := range names {
		if pid, err := strconv.ParseUint(name, 10, 32); err == nil {
			pids = append(pids, uint32(pid))
		}
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })

	var p procSockets
	link := make([]byte, 64)
	for _, pid := range pids {
		p = procSockets{Pid: pid, Sockets: p.Sockets[:0], dir: procRoot + "/" + strconv.FormatUint(uint64(pid), 10)}
		dirfd, err := unix.Open(p.dir+"/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // gone, a kernel thread, or not ours to read
		}
		fdDir := os.NewFile(uintptr(dirfd), p.dir+"/fd")
		fds, err := fdDir.Readdirnames(-1)
		if err != nil {
			fdDir.Close()
			continue
		}
		p.Sockets = readSocketFDs(dirfd, fds, p.Sockets, link)
		fdDir.Close()
		if len(p.Sockets) == 0 {
			continue
		}
		sort.Slice(p.Sockets, func(i, j int) bool { return p.Sockets[i].FD < p.Sockets[j].FD })
		if err := visit(&p); err != nil {
			return err
		}
	}
	return nil
}

// parallelFDs is how many open files make a process's fds read by every
// CPU at once: a server holding tens of thousands of sockets is read in
// a fraction of the time (tcpstate's start-up, ls and stuck wait for it).
const parallelFDs = 8192

// readSocketFDs appends to out the sockets among the fds (names in
// /proc/PID/fd, open as dirfd); link is a buffer for one link's target.
func readSocketFDs(dirfd int, fds []string, out []socketFD, link []byte) []socketFD {
	read := func(names []string, out []socketFD, link []byte) []socketFD {
		for _, name := range names {
			n, err := unix.Readlinkat(dirfd, name, link)
			if err != nil {
				continue // closed meanwhile
			}
			ino, ok := socketInode(link[:n])
			if !ok {
				continue
			}
			fd, err := strconv.ParseInt(name, 10, 32)
			if err != nil {
				continue
			}
			out = append(out, socketFD{FD: int32(fd), Inode: ino})
		}
		return out
	}
	workers := runtime.NumCPU()
	if len(fds) < parallelFDs || workers < 2 {
		return read(fds, out, link)
	}
	parts := make([][]socketFD, workers)
	var wg sync.WaitGroup
	for w := range workers {
		chunk := fds[w*len(fds)/workers : (w+1)*len(fds)/workers]
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[w] = read(chunk, nil, make([]byte, len(link)))
		}()
	}
	wg.Wait()
	for _, part := range parts {
		out = append(out, part...)
	}
	return out
}

// socketInode parses the target of a /proc/PID/fd link: "socket:[12345]".
func socketInode(target []byte) (uint64, bool) {
	const prefix = "socket:["
	if len(target) < len(prefix)+2 || string(target[:len(prefix)]) != prefix || target[len(target)-1] != ']' {
		return 0, false
	}
	var ino uint64
	for _, c := range target[len(prefix) : len(target)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		ino = ino*10 + uint64(c-'0')
	}
	return ino, true
}

// Owner is a process holding a socket through one of its file descriptors.
type Owner struct {
	Pid  uint32
	Comm string
	FD   int32
}

// SocketOwners calls visit for every socket that a process holds, once per
// file descriptor, by pid then fd, with the socket's inode: who holds the
// sockets that exist now, as ss -p finds them. Processes that go away
// meanwhile are skipped.
func SocketOwners(visit func(inode uint64, o Owner) error) error {
	return walkSocketFDs(func(p *procSockets) error {
		comm, err := p.Comm()
		if err != nil {
			return nil // gone
		}
		for _, s := range p.Sockets {
			if err := visit(s.Inode, Owner{Pid: p.Pid, Comm: comm, FD: s.FD}); err != nil {
				return err
			}
		}
		return nil
	})
}

// socketOwners finds the processes holding the sockets whose inodes
// want lists (every socket when want is nil), as ss -p does. A socket
// shared by several processes, or open on several fds, has several
// owners, ordered by pid and fd.
func socketOwners(want map[uint64]bool) (map[uint64][]Owner, error) {
	owners := map[uint64][]Owner{}
	err := walkSocketFDs(func(p *procSockets) error {
		for _, s := range p.Sockets {
			if want != nil && !want[s.Inode] {
				continue
			}
			comm, err := p.Comm()
			if err != nil {
				return nil // gone
			}
			owners[s.Inode] = append(owners[s.Inode], Owner{Pid: p.Pid, Comm: comm, FD: s.FD})
		}
		return nil
	})
	return owners, err
}
