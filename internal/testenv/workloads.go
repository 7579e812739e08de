// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
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
