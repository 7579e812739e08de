// SPDX-License-Identifier: Apache-2.0

package ladder_test

// The socket workloads of the live tests: each path of the reference
// article on one connection, run as a process of its own (this test binary
// again) inside the test's network namespace.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/tcpstate/tcpstate/internal/testenv"
)

// ports is what a scenario prints: the client's local port and the
// server's port.
type ports struct {
	Client int `json:"client"`
	Server int `json:"server"`
}

// runScenario is the helper's main; args: scenario, network.
func runScenario(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: scenario network [address [port]]")
	}
	scenario, network := args[0], args[1]
	switch scenario {
	case "ns-server":
		return nsServer(network, args)
	case "ns-client":
		return nsClient(network, args)
	}
	addr := "127.0.0.1"
	if network == "tcp6" {
		addr = "::1"
	}
	say := func(p ports) error { return json.NewEncoder(os.Stdout).Encode(p) }
	switch scenario {
	case "refused":
		port, err := testenv.Refused(network, addr)
		if err != nil {
			return err
		}
		return say(ports{Server: port})
	case "syn-timeout":
		// One retransmission, then ETIMEDOUT: about 3 s.
		if err := os.WriteFile("/proc/sys/net/ipv4/tcp_syn_retries", []byte("1"), 0o644); err != nil {
			return err
		}
		const port = 7999
		if err := testenv.DropSYNs(port); err != nil {
			return err
		}
		c, err := net.Dial(network, net.JoinHostPort(addr, strconv.Itoa(port)))
		if err == nil {
			c.Close()
			return errors.New("connect through a SYN drop succeeded")
		}
		return say(ports{Server: port})
	}
	ln, client, server, err := testenv.Connect(network, addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	p := ports{Client: client.LocalAddr().(*net.TCPAddr).Port, Server: ln.Addr().(*net.TCPAddr).Port}
	switch scenario {
	case "client-closes":
		err = testenv.CloseFirst(client, server)
	case "server-closes":
		err = testenv.CloseFirst(server, client)
	case "half-close":
		err = testenv.HalfClose(client, server)
	case "reset":
		err = testenv.Reset(client, server)
	case "simultaneous":
		err = testenv.SimultaneousClose(client, server)
	default:
		err = fmt.Errorf("unknown scenario %q", scenario)
	}
	if err != nil {
		return err
	}
	testenv.Pause()
	return say(p)
}

// nsServer listens on args[2] in its namespace, says its port, then
// takes one connection, reads it to the end and closes (the client
// closes first).
func nsServer(network string, args []string) error {
	ln, err := net.Listen(network, net.JoinHostPort(args[2], "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	if err := json.NewEncoder(os.Stdout).Encode(ports{Server: ln.Addr().(*net.TCPAddr).Port}); err != nil {
		return err
	}
	s, err := ln.Accept()
	if err != nil {
		return err
	}
	if b, err := io.ReadAll(s); err != nil || string(b) != "hello" {
		return fmt.Errorf("read %q, %v", b, err)
	}
	testenv.Pause()
	return s.Close()
}

// nsClient connects to args[2] port args[3] from its namespace, sends
// "hello", closes, and says its port.
func nsClient(network string, args []string) error {
	c, err := net.Dial(network, net.JoinHostPort(args[2], args[3]))
	if err != nil {
		return err
	}
	port := c.LocalAddr().(*net.TCPAddr).Port
	if _, err := c.Write([]byte("hello")); err != nil {
		return err
	}
	c.Close()
	time.Sleep(100 * time.Millisecond)
	return json.NewEncoder(os.Stdout).Encode(ports{Client: port})
}
