// SPDX-License-Identifier: Apache-2.0

// Command workload is the process the image test runs in a container
// placed in a kubelet-layout cgroup: on loopback it makes one connection
// end in TIME_WAIT (it closes first) and leaves one server socket in
// CLOSE_WAIT (the peer closed, it never does), prints their ports as
// "timewait PORT" and "closewait LPORT RPORT", then sleeps until killed.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	held, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "workload:", err)
		os.Exit(1)
	}
	for range time.Tick(time.Hour) {
		_ = held // the CLOSE_WAIT socket stays open while the process lives
	}
}

func run() ([]io.Closer, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	// TIME_WAIT: the client closes first, then the server.
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	s, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	port := c.LocalAddr().(*net.TCPAddr).Port
	c.Close()
	time.Sleep(100 * time.Millisecond)
	s.Close()
	fmt.Printf("timewait %d\n", port)

	// CLOSE_WAIT: the client closes, the server socket is kept open.
	c, err = net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	s, err = ln.Accept()
	if err != nil {
		return nil, err
	}
	c.Close()
	fmt.Printf("closewait %d %d\n", s.LocalAddr().(*net.TCPAddr).Port, s.RemoteAddr().(*net.TCPAddr).Port)
	return []io.Closer{s, ln}, nil
}
