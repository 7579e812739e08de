// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"fmt"
	"net"
	"os/exec"
	"time"
)

// nft runs nft(8) in this network namespace.
func nft(args ...string) error {
	if out, err := exec.Command("nft", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("nft %v: %v: %s", args, err, out)
	}
	return nil
}

// SimultaneousClose makes both sides send their FIN before seeing the
// other's (run it in a namespace of its own: it adds an nftables table):
// the client's FIN is dropped until the server's FIN has arrived, so the
// client goes FIN_WAIT1 -> CLOSING, and TIME_WAIT once its retransmitted
// FIN is acknowledged.
func SimultaneousClose(client, server *net.TCPConn) error {
	cport := client.LocalAddr().(*net.TCPAddr).Port
	sport := server.LocalAddr().(*net.TCPAddr).Port
	for _, cmd := range []string{
		"add table inet tcpstate_simultaneous",
		"add chain inet tcpstate_simultaneous out { type filter hook output priority 0; }",
		fmt.Sprintf("add rule inet tcpstate_simultaneous out tcp sport %d tcp dport %d tcp flags & fin == fin drop", cport, sport),
	} {
		if err := nft(cmd); err != nil {
			return err
		}
	}
	client.Close() // FIN dropped: FIN_WAIT1
	time.Sleep(20 * time.Millisecond)
	server.Close() // its FIN reaches the client in FIN_WAIT1: CLOSING
	time.Sleep(20 * time.Millisecond)
	if err := nft("delete table inet tcpstate_simultaneous"); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond) // the client's FIN is retransmitted (RTO >= 200 ms)
	return nil
}

// DropSYNs makes this network namespace drop every SYN sent to port (run
// it in a namespace of its own: it adds an nftables table), so that a
// connect() there goes unanswered.
func DropSYNs(port int) error {
	for _, cmd := range []string{
		"add table inet tcpstate_dropsyn",
		"add chain inet tcpstate_dropsyn in { type filter hook input priority 0; }",
		fmt.Sprintf("add rule inet tcpstate_dropsyn in tcp dport %d tcp flags & syn == syn drop", port),
	} {
		if err := nft(cmd); err != nil {
			return err
		}
	}
	return nil
}
