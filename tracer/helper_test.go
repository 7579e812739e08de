// SPDX-License-Identifier: Apache-2.0

package tracer_test

// The socket workloads of the integration tests. They run as separate
// processes (this test binary re-executed inside a test network namespace),
// so that each socket has a known owner pid.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tcpstate/tcpstate/internal/testenv"
	"github.com/tcpstate/tcpstate/tracer"
)

// testKernelBTF, from TCPSTATE_TEST_KERNEL_BTF, is a BTF file that every
// tracer startTracer starts is given (tracer.Options.KernelBTF), so that
// all of them take the classic-tracepoint path, which does not follow
// TIME_WAIT. make vmtest's classic run sets it, with
// /sys/kernel/btf/vmlinux hidden (vmtest/README.md).
var testKernelBTF = os.Getenv("TCPSTATE_TEST_KERNEL_BTF")

// withTestKernelBTF gives opts the TCPSTATE_TEST_KERNEL_BTF file, if any,
// also in place of the /sys/kernel/btf/vmlinux of a classic case.
func withTestKernelBTF(opts tracer.Options) tracer.Options {
	if testKernelBTF != "" {
		opts.KernelBTF = testKernelBTF
	}
	return opts
}

// classicWant is the path a test expects where TIME_WAIT is followed, as
// the classic path (TCPSTATE_TEST_KERNEL_BTF) reports it: the kernel's
// FIN_WAIT2 -> CLOSE.
func classicWant(path string) string {
	if testKernelBTF == "" {
		return path
	}
	return strings.ReplaceAll(path, ">TIME_WAIT", ">CLOSE")
}

// helperReport is what a helper prints on stdout, one JSON object a line.
type helperReport struct {
	Pid    int    `json:"pid"`
	Client int    `json:"client,omitempty"` // client's local port
	Server int    `json:"server,omitempty"` // server's listening port
	Step   string `json:"step,omitempty"`
}

// runHelper is the helper process's main; args: role, network, [port].
func runHelper(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: role network [args]")
	}
	role, network := args[0], args[1]
	addr := "127.0.0.1"
	if network == "tcp6" {
		addr = "::1"
	}
	if len(args) > 2 && args[2] != "" {
		addr = args[2]
	}
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewReader(os.Stdin)
	say := func(r helperReport) error {
		r.Pid = os.Getpid()
		return out.Encode(r)
	}
	wait := func() error { _, err := in.ReadString('\n'); return err }

	switch role {
	case "client-closes", "server-closes", "half-close", "reset":
		return pair(role, network, addr, say)
	case "tw-reuse":
		return twReuse(network, addr, say)
	case "orphan-timeout":
		return orphanTimeout(network, addr, say)
	case "simultaneous":
		return simultaneousClose(network, addr, say)
	case "tw-reuse-loop", "server-tw-reuse-loop", "tw-churn", "orphan-burst", "hold-many", "pair-both":
		return runLimitsHelper(role, network, addr, args[min(3, len(args)):], in) // limits_helper_test.go
	case "refused":
		ln, err := net.Listen(network, net.JoinHostPort(addr, "0"))
		if err != nil {
			return err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		c, err := net.Dial(network, net.JoinHostPort(addr, strconv.Itoa(port)))
		if err == nil {
			c.Close()
			return errors.New("connect to a closed port succeeded")
		}
		return say(helperReport{Server: port})
	case "server":
		ln, err := net.Listen(network, net.JoinHostPort(addr, "0"))
		if err != nil {
			return err
		}
		if err := say(helperReport{Server: ln.Addr().(*net.TCPAddr).Port}); err != nil {
			return err
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		if err := say(helperReport{Step: "accepted"}); err != nil {
			return err
		}
		if _, err := io.ReadAll(s); err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond) // let the peer reach FIN_WAIT2
		s.Close()
		time.Sleep(20 * time.Millisecond)
		return ln.Close()
	case "client":
		if err := wait(); err != nil { // "go": lets the test move us first
			return err
		}
		c, err := net.Dial(network, net.JoinHostPort(addr, args[3]))
		if err != nil {
			return err
		}
		if err := say(helperReport{Client: c.LocalAddr().(*net.TCPAddr).Port}); err != nil {
			return err
		}
		if err := wait(); err != nil { // "close": the server has accepted
			return err
		}
		if _, err := c.Write([]byte("hello")); err != nil {
			return err
		}
		if err := c.Close(); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
		return nil
	}
	if run, ok := whyHelpers[role]; ok { // why_helper_test.go
		return run(network, addr, say)
	}
	return fmt.Errorf("unknown helper role %q", role)
}

// connection makes a listener and one connection to it, dialled with d:
// the client's and the server's socket.
func connection(network, addr string, d *net.Dialer) (ln net.Listener, client, server net.Conn, err error) {
	ln, err = net.Listen(network, net.JoinHostPort(addr, "0"))
	if err != nil {
		return nil, nil, nil, err
	}
	if client, err = d.Dial(network, ln.Addr().String()); err != nil {
		ln.Close()
		return nil, nil, nil, err
	}
	if server, err = ln.Accept(); err != nil {
		ln.Close()
		client.Close()
		return nil, nil, nil, err
	}
	return ln, client, server, nil
}

// ports returns the client's local port and the server's listening port.
func ports(ln net.Listener, client net.Conn) helperReport {
	return helperReport{Client: client.LocalAddr().(*net.TCPAddr).Port, Server: ln.Addr().(*net.TCPAddr).Port}
}

// pair runs client and server of one connection in this process.
func pair(scenario, network, addr string, say func(helperReport) error) error {
	ln, c, sc, err := connection(network, addr, &net.Dialer{})
	if err != nil {
		return err
	}
	defer ln.Close()
	client, server := c.(*net.TCPConn), sc.(*net.TCPConn)
	if err := say(ports(ln, c)); err != nil {
		return err
	}
	pause := testenv.Pause
	switch scenario {
	case "client-closes", "server-closes":
		first, second := client, server
		if scenario == "server-closes" {
			first, second = server, client
		}
		if _, err := first.Write([]byte("hello")); err != nil {
			return err
		}
		first.Close()
		if b, err := io.ReadAll(second); err != nil || string(b) != "hello" {
			return fmt.Errorf("read %q, %v", b, err)
		}
		pause() // the first closer reaches FIN_WAIT2
		second.Close()
	case "half-close":
		if err := testenv.HalfClose(client, server); err != nil {
			return err
		}
	case "reset":
		if err := testenv.Reset(client, server); err != nil {
			return err
		}
	}
	pause()
	return nil
}

// reuseAddr sets SO_REUSEADDR, so that a connect can bind the port that a
// TIME_WAIT socket of ours still holds.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// setSysctl writes a sysctl of this network namespace; it reports whether
// the kernel has it.
func setSysctl(name, value string) (bool, error) {
	path := "/proc/sys/net/ipv4/" + name
	if _, err := os.Stat(path); err != nil {
		return false, nil
	}
	return true, os.WriteFile(path, []byte(value), 0o644)
}

// twReuse closes a connection from the client side, so that the client's
// 4-tuple sits in TIME_WAIT, then connects again from the same port to the
// same server: the kernel reuses the TIME_WAIT socket (tcp_tw_reuse, on
// for loopback by default), which ends its TIME_WAIT.
func twReuse(network, addr string, say func(helperReport) error) error {
	wait := 1100 * time.Millisecond // reuse needs a timestamp older than 1 s
	if ok, err := setSysctl("tcp_tw_reuse_delay", "10"); err != nil {
		return err
	} else if ok {
		wait = 100 * time.Millisecond
	}
	d := net.Dialer{Control: reuseAddr}
	ln, c, s, err := connection(network, addr, &d)
	if err != nil {
		return err
	}
	defer ln.Close()
	local := c.LocalAddr().(*net.TCPAddr)
	first := ports(ln, c)
	c.Close()
	io.ReadAll(s)
	s.Close()
	first.Step = "time-wait"
	if err := say(first); err != nil {
		return err
	}
	time.Sleep(wait)
	d.LocalAddr = local
	c, err = d.Dial(network, ln.Addr().String())
	if err != nil {
		return fmt.Errorf("reconnect from port %d: %w", local.Port, err)
	}
	s, err = ln.Accept()
	if err != nil {
		return err
	}
	s.Close()
	io.ReadAll(c)
	c.Close()
	time.Sleep(20 * time.Millisecond)
	return say(helperReport{Client: local.Port, Step: "reused"})
}

// orphanTimeout closes the client while the server never answers with its
// FIN: the orphaned FIN_WAIT2 lasts tcp_fin_timeout (1 s here), then ends.
func orphanTimeout(network, addr string, say func(helperReport) error) error {
	if _, err := setSysctl("tcp_fin_timeout", "1"); err != nil {
		return err
	}
	ln, c, s, err := connection(network, addr, &net.Dialer{})
	if err != nil {
		return err
	}
	defer ln.Close()
	if err := say(ports(ln, c)); err != nil {
		return err
	}
	c.Close()
	time.Sleep(2500 * time.Millisecond) // the server holds its socket open
	s.Close()
	time.Sleep(20 * time.Millisecond)
	return nil
}

// simultaneousClose makes both sides send their FIN before seeing the
// other's: the client's FIN is dropped until the server's FIN has arrived,
// so the client goes FIN_WAIT1 -> CLOSING, and TIME_WAIT once the
// retransmitted FIN is acknowledged.
func simultaneousClose(network, addr string, say func(helperReport) error) error {
	ln, c, s, err := connection(network, addr, &net.Dialer{})
	if err != nil {
		return err
	}
	defer ln.Close()
	r := ports(ln, c)
	if err := say(r); err != nil {
		return err
	}
	return testenv.SimultaneousClose(c.(*net.TCPConn), s.(*net.TCPConn))
}

// withTestHooks applies TCPSTATE_TEST_HOOKS (fentry or tracepoint; make
// vmtest runs the tests with each) to opts that choose none.
func withTestHooks(opts tracer.Options) tracer.Options {
	if opts.Hooks == tracer.HooksAuto {
		opts.Hooks = tracer.Hooks(os.Getenv("TCPSTATE_TEST_HOOKS"))
	}
	return opts
}
