// SPDX-License-Identifier: Apache-2.0

package tracer_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The workloads of TestWhy, each run in a fresh namespace by a helper
// process: one way for a connection to fail, which it checks it saw as
// its application (the error read). nft rules stay in the helper's
// namespace.
var whyHelpers = map[string]func(network, addr string, say func(helperReport) error) error{
	"unread-close":      unreadClose,
	"linger-zero":       lingerZero,
	"forgotten":         forgotten,
	"keepalive-timeout": keepaliveTimeout,
	"user-timeout":      userTimeout,
	"unreachable":       unreachable,
	"backlog-full":      backlogFull,
	"refused-flood":     refusedFlood,
}

// expectErr reads from c until an error, which must be want.
func expectErr(c net.Conn, want syscall.Errno, within time.Duration) error {
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if !errors.Is(err, want) {
			return fmt.Errorf("read: %w, want %v", err, want)
		}
		return nil
	}
}

func nft(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, out)
	}
	return nil
}

// silence drops every segment the server (port) sends, or only its RSTs.
func silence(port int, rstOnly bool) error {
	match := "tcp sport " + strconv.Itoa(port)
	if rstOnly {
		match += " tcp flags rst"
	}
	return nft(rule(match + " drop"))
}

// rule is an nft script of one rule on the namespace's output.
func rule(r string) string {
	return "table inet why {\n chain out {\n  type filter hook output priority 0;\n  " + r + "\n }\n}\n"
}

func unsilence() error { return nft("delete table inet why") }

// unreadClose: the server closes with data it never read: its RST says
// TCP_ABORT_ON_CLOSE, the client reads ECONNRESET.
func unreadClose(network, addr string, say func(helperReport) error) error {
	ln, c, s, err := connection(network, addr, &net.Dialer{})
	if err != nil {
		return err
	}
	defer ln.Close()
	defer c.Close()
	if _, err := c.Write([]byte("never read")); err != nil {
		return err
	}
	time.Sleep(50 * time.Millisecond)
	s.Close()
	if err := expectErr(c, unix.ECONNRESET, 5*time.Second); err != nil {
		return err
	}
	return say(ports(ln, c))
}

// lingerZero: the client closes with SO_LINGER {1, 0}: tcp_disconnect()
// sends a RST that says TCP_STATE; the server reads ECONNRESET.
func lingerZero(network, addr string, say func(helperReport) error) error {
	ln, c, s, err := connection(network, addr, &net.Dialer{})
	if err != nil {
		return err
	}
	defer ln.Close()
	defer s.Close()
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		return err
	}
	c.Close()
	if err := expectErr(s, unix.ECONNRESET, 5*time.Second); err != nil {
		return err
	}
	return say(ports(ln, c))
}

// forgotten: the server's socket goes (SO_LINGER 0, its RST dropped)
// without the client knowing; the client's next segment finds no socket:
// a RST that says NO_SOCKET, and the client reads ECONNRESET.
func forgotten(network, addr string, say func(helperReport) error) error {
	ln, c, s, err := connection(network, addr, &net.Dialer{})
	if err != nil {
		return err
	}
	defer ln.Close()
	defer c.Close()
	r := ports(ln, c)
	if err := silence(r.Server, true); err != nil {
		return err
	}
	if err := s.(*net.TCPConn).SetLinger(0); err != nil {
		return err
	}
	s.Close()
	ln.Close() // or the listener would answer (TCP_FLAGS: an ACK it expects not)
	time.Sleep(50 * time.Millisecond)
	if err := unsilence(); err != nil {
		return err
	}
	if _, err := c.Write([]byte("anyone?")); err != nil {
		return err
	}
	if err := expectErr(c, unix.ECONNRESET, 5*time.Second); err != nil {
		return err
	}
	return say(r)
}

// keepaliveTimeout: the server falls silent; the client's keepalive
// gives up after one probe: its RST says TCP_KEEPALIVE_TIMEOUT, it reads
// ETIMEDOUT, the server ECONNRESET.
func keepaliveTimeout(network, addr string, say func(helperReport) error) error {
	ln, c, s, err := connection(network, addr, &net.Dialer{KeepAlive: -1})
	if err != nil {
		return err
	}
	defer ln.Close()
	defer c.Close()
	defer s.Close()
	r := ports(ln, c)
	if err := silence(r.Server, false); err != nil {
		return err
	}
	defer unsilence()
	if err := c.(*net.TCPConn).SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 1}); err != nil {
		return err
	}
	if err := expectErr(c, unix.ETIMEDOUT, 10*time.Second); err != nil {
		return err
	}
	if err := expectErr(s, unix.ECONNRESET, 5*time.Second); err != nil {
		return err
	}
	return say(r)
}

// userTimeout: the server falls silent while the client has data in
// flight; TCP_USER_TIMEOUT (1 s) ends the client with ETIMEDOUT after
// retransmissions, and no RST.
func userTimeout(network, addr string, say func(helperReport) error) error {
	ln, c, s, err := connection(network, addr, &net.Dialer{})
	if err != nil {
		return err
	}
	defer ln.Close()
	defer c.Close()
	r := ports(ln, c)
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 1000)
	}); err != nil || serr != nil {
		return fmt.Errorf("set TCP_USER_TIMEOUT: %w", cmpErr(err, serr))
	}
	if err := silence(r.Server, false); err != nil {
		return err
	}
	if _, err := c.Write([]byte("in flight")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	if _, err := s.Read(buf); err != nil { // read: the server's close sends a FIN, no RST
		return err
	}
	if err := expectErr(c, unix.ETIMEDOUT, 10*time.Second); err != nil {
		return err
	}
	if err := unsilence(); err != nil {
		return err
	}
	s.Close() // its FIN finds no socket: a RST back (NO_SOCKET)
	time.Sleep(100 * time.Millisecond)
	return say(r)
}

// unreachable: an nftables reject answers the SYN with ICMP host
// unreachable: connect() fails with EHOSTUNREACH at once.
func unreachable(network, addr string, say func(helperReport) error) error {
	ln, err := net.Listen(network, net.JoinHostPort(addr, "0"))
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if err := nft(rule("tcp dport " + strconv.Itoa(port) + " reject with icmpx type host-unreachable")); err != nil {
		return err
	}
	defer unsilence()
	// A blocking connect(), as Go's Dial is not: on loopback the ICMP
	// answer comes while connect() holds the socket, so the kernel keeps
	// it as a soft error (which getsockopt(SO_ERROR) takes, and Go's
	// Dial then closes the socket itself); the retransmitted SYN's answer
	// then ends it with EHOSTUNREACH, as an answer from afar would.
	family, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
	if network == "tcp6" {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: port, Addr: [16]byte{15: 1}}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sa); !errors.Is(err, unix.EHOSTUNREACH) {
		return fmt.Errorf("connect: %v, want EHOSTUNREACH", err)
	}
	return say(helperReport{Server: port})
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// backlogFull: a listener with backlog 1 that never accepts, and six
// connects to it: the kernel drops SYNs and handshake ACKs for the full
// accept queue. It holds everything until told (a line on stdin).
func backlogFull(network, addr string, say func(helperReport) error) error {
	family, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	if network == "tcp6" {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, sa); err != nil {
		return err
	}
	if err := unix.Listen(fd, 1); err != nil {
		return err
	}
	name, err := unix.Getsockname(fd)
	if err != nil {
		return err
	}
	port := 0
	switch a := name.(type) {
	case *unix.SockaddrInet4:
		port = a.Port
	case *unix.SockaddrInet6:
		port = a.Port
	}
	var mu sync.Mutex
	var conns []net.Conn
	for range 6 {
		go func() {
			c, err := net.DialTimeout(network, net.JoinHostPort(addr, strconv.Itoa(port)), 5*time.Second)
			if err == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(2500 * time.Millisecond) // SYNs retransmitted after 1 s and 2 s
	if err := say(helperReport{Server: port}); err != nil {
		return err
	}
	bufio.NewReader(os.Stdin).ReadString('\n')
	mu.Lock()
	defer mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// refusedFlood connects 2000 times to a closed port, 50 at a time: as
// many RSTs to no socket, at once.
func refusedFlood(network, addr string, say func(helperReport) error) error {
	ln, err := net.Listen(network, net.JoinHostPort(addr, "0"))
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	target := net.JoinHostPort(addr, strconv.Itoa(port))
	for range 2000 / 50 {
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if c, err := net.Dial(network, target); err == nil {
					c.Close()
				}
			}()
		}
		wg.Wait()
	}
	return say(helperReport{Server: port})
}
