// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"
)

// Pause lets the peer's side of a loopback connection catch up (a FIN
// processed, FIN_WAIT2 reached).
func Pause() { time.Sleep(20 * time.Millisecond) }

// HalfClose closes a connection as the reference article's half-close:
// the client shuts down sending (FIN_WAIT1, FIN_WAIT2), the server, in
// CLOSE_WAIT, still sends 9 bytes, then closes (LAST_ACK), and the client
// closes (TIME_WAIT).
func HalfClose(client, server *net.TCPConn) error {
	if err := client.CloseWrite(); err != nil { // shutdown(SHUT_WR)
		return err
	}
	if _, err := io.ReadAll(server); err != nil {
		return err
	}
	Pause()
	// In CLOSE_WAIT the server may still send.
	if _, err := server.Write([]byte("after fin")); err != nil {
		return err
	}
	buf := make([]byte, 9)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "after fin" {
		return fmt.Errorf("half-close read %q, %v", buf, err)
	}
	server.Close()
	if _, err := io.ReadAll(client); err != nil {
		return err
	}
	return client.Close()
}

// Reset closes a connection with a RST: the client closes with SO_LINGER
// 0, the server reads ECONNRESET and closes.
func Reset(client, server *net.TCPConn) error {
	if err := client.SetLinger(0); err != nil {
		return err
	}
	client.Close() // RST instead of FIN
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("server read after reset: %v, want ECONNRESET", err)
	}
	return server.Close()
}

// Connect makes a listener on addr (port 0: any) and one connection to
// it: the client's socket and the server's.
func Connect(network, addr string) (ln net.Listener, client, server *net.TCPConn, err error) {
	ln, err = net.Listen(network, net.JoinHostPort(addr, "0"))
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, nil, nil, err
	}
	s, err := ln.Accept()
	if err != nil {
		ln.Close()
		c.Close()
		return nil, nil, nil, err
	}
	return ln, c.(*net.TCPConn), s.(*net.TCPConn), nil
}

// Refused connects to a port of addr that was just closed and returns it:
// the kernel answers the SYN with a RST (connection refused).
func Refused(network, addr string) (port int, err error) {
	ln, err := net.Listen(network, net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, err
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c, err := net.Dial(network, net.JoinHostPort(addr, strconv.Itoa(port)))
	if err == nil {
		c.Close()
		return 0, errors.New("connect to a closed port succeeded")
	}
	return port, nil
}

// CloseFirst closes a connection as the article's 4-way close: first
// sends "hello" and closes (FIN_WAIT1, FIN_WAIT2), second reads it to the
// peer's FIN (CLOSE_WAIT), then closes (LAST_ACK); first is in TIME_WAIT.
func CloseFirst(first, second *net.TCPConn) error {
	if _, err := first.Write([]byte("hello")); err != nil {
		return err
	}
	first.Close()
	if b, err := io.ReadAll(second); err != nil || string(b) != "hello" {
		return fmt.Errorf("read %q, %v", b, err)
	}
	Pause() // the first closer reaches FIN_WAIT2
	return second.Close()
}
