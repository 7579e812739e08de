// SPDX-License-Identifier: Apache-2.0

package tracer_test

// Helper roles of the tests in limits_test.go: workloads with many
// connections, or one 4-tuple used over and over. Like the roles in
// helper_test.go they run as this test binary re-executed inside a test
// network namespace, and print JSON lines on stdout.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// limitsReport is what the helpers of limits_test.go print, one JSON
// object a line. Port lists come in chunks of at most portsPerLine.
type limitsReport struct {
	Pid     int    `json:"pid"`
	Step    string `json:"step,omitempty"`
	Server  int    `json:"server,omitempty"`  // listening port
	Client  int    `json:"client,omitempty"`  // client's local port
	Clients []int  `json:"clients,omitempty"` // clients' local ports
	Conns   int    `json:"conns,omitempty"`   // connections completed
	Errors  int    `json:"errors,omitempty"`
	Error   string `json:"error,omitempty"` // the first error
}

const portsPerLine = 1000

// runLimitsHelper runs the roles of limits_test.go; args are what follows
// role, network and address.
func runLimitsHelper(role, network, addr string, args []string, in *bufio.Reader) error {
	out := json.NewEncoder(os.Stdout)
	say := func(r limitsReport) error {
		r.Pid = os.Getpid()
		return out.Encode(r)
	}
	// waitFor reads the test's next command and checks it is want.
	waitFor := func(want string) error {
		line, err := in.ReadString('\n')
		if err != nil {
			return fmt.Errorf("waiting for %q: %w", want, err)
		}
		if got := line[:len(line)-1]; got != want {
			return fmt.Errorf("got command %q, want %q", got, want)
		}
		return nil
	}
	intArg := func(i int) (int, error) {
		if i >= len(args) {
			return 0, fmt.Errorf("%s: missing argument %d", role, i)
		}
		return strconv.Atoi(args[i])
	}
	switch role {
	case "tw-reuse-loop":
		n, err := intArg(0)
		if err != nil {
			return err
		}
		gap, err := intArg(1)
		if err != nil {
			return err
		}
		delay := ""
		if len(args) > 2 {
			delay = args[2]
		}
		return twReuseLoop(network, addr, n, time.Duration(gap)*time.Millisecond, delay, say)
	case "server-tw-reuse-loop":
		n, err := intArg(0)
		if err != nil {
			return err
		}
		return serverTWReuseLoop(network, addr, n, say)
	case "tw-churn":
		ms, err := intArg(0)
		if err != nil {
			return err
		}
		workers, err := intArg(1)
		if err != nil {
			return err
		}
		rate, err := intArg(2)
		if err != nil {
			return err
		}
		return twChurn(network, addr, time.Duration(ms)*time.Millisecond, workers, rate, say)
	case "orphan-burst", "hold-many":
		n, err := intArg(0)
		if err != nil {
			return err
		}
		rate, err := intArg(1)
		if err != nil {
			return err
		}
		return manyConnections(role, network, addr, n, rate, say, waitFor)
	case "pair-both":
		// A client-closes connection over IPv4, then one over IPv6.
		for _, nw := range []struct{ network, addr string }{{"tcp4", "127.0.0.1"}, {"tcp6", "::1"}} {
			err := pair("client-closes", nw.network, nw.addr, func(r helperReport) error {
				return say(limitsReport{Step: nw.network, Client: r.Client, Server: r.Server})
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown helper role %q", role)
}

// twReuseLoop makes n connections from one local port to one server, gap
// apart. Each time the client half-closes, the server reads the end and
// closes, then the client reads the end and closes: the client's 4-tuple
// enters TIME_WAIT, and the next connect reuses that TIME_WAIT socket
// (tcp_tw_reuse=1; tcp_tw_reuse_delay set to delay ms unless empty).
func twReuseLoop(network, addr string, n int, gap time.Duration, delay string, say func(limitsReport) error) error {
	if _, err := setSysctl("tcp_tw_reuse", "1"); err != nil {
		return err
	}
	if delay != "" {
		if ok, err := setSysctl("tcp_tw_reuse_delay", delay); err != nil {
			return err
		} else if !ok {
			return errors.New("this kernel has no tcp_tw_reuse_delay")
		}
	}
	clientFirst := func(c, s net.Conn) error {
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		if _, err := io.ReadAll(s); err != nil {
			return err
		}
		s.Close()
		if _, err := io.ReadAll(c); err != nil {
			return err
		}
		return c.Close()
	}
	first := func(client, server int) error {
		return say(limitsReport{Step: "port", Client: client, Server: server})
	}
	_, server, err := sameTupleLoop(network, addr, n, gap, clientFirst, first)
	if err != nil {
		return err
	}
	return say(limitsReport{Step: "done", Conns: n, Server: server})
}

// serverTWReuseLoop makes n connections from one local port to one
// server, one after the other; the server closes each first, so its
// socket enters TIME_WAIT, and the client's next SYN on the same 4-tuple
// ends that TIME_WAIT at once (the kernel's TCP_TW_SYN), often within
// microseconds of its making.
func serverTWReuseLoop(network, addr string, n int, say func(limitsReport) error) error {
	serverFirst := func(c, s net.Conn) error {
		s.Close()
		if _, err := io.ReadAll(c); err != nil {
			return err
		}
		return c.Close()
	}
	client, server, err := sameTupleLoop(network, addr, n, 0, serverFirst, func(int, int) error { return nil })
	if err != nil {
		return err
	}
	return say(limitsReport{Step: "done", Conns: n, Client: client, Server: server})
}

// sameTupleLoop makes n connections from one local port to one server,
// gap apart, each ended by end (c the client's side, s the server's);
// first is given the two ports once the first connection is made.
func sameTupleLoop(network, addr string, n int, gap time.Duration, end func(c, s net.Conn) error,
	first func(client, server int) error) (client, server int, err error) {
	ln, err := net.Listen(network, net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	server = ln.Addr().(*net.TCPAddr).Port
	d := net.Dialer{Control: reuseAddr}
	for i := 0; i < n; i++ {
		if i > 0 {
			time.Sleep(gap)
		}
		c, err := d.Dial(network, ln.Addr().String())
		if err != nil {
			return 0, 0, fmt.Errorf("connection %d: %w", i, err)
		}
		if i == 0 {
			d.LocalAddr = c.LocalAddr()
			client = c.LocalAddr().(*net.TCPAddr).Port
			if err := first(client, server); err != nil {
				return 0, 0, err
			}
		}
		s, err := ln.Accept()
		if err != nil {
			return 0, 0, err
		}
		if err := end(c, s); err != nil {
			return 0, 0, err
		}
	}
	time.Sleep(20 * time.Millisecond)
	return client, server, nil
}

// churnMsg is the request each churn connection carries.
var churnMsg = []byte("tcpstate churn!\n")

// twChurn makes short connections with workers clients for d, rate
// connections a second in all; the client always sends its FIN first, so
// every client socket enters TIME_WAIT. Even workers close() at once (the
// socket is orphaned in FIN_WAIT2 until the server's FIN), odd workers
// half-close, read the server's FIN and then close (no orphan). The
// namespace has 5000 ephemeral ports, and tcp_tw_reuse with a 10 ms delay
// lets connect() reuse the ports of TIME_WAIT sockets: TIME_WAITs end by
// reuse within seconds.
func twChurn(network, addr string, d time.Duration, workers, rate int, say func(limitsReport) error) error {
	for name, value := range map[string]string{
		"tcp_tw_reuse":        "1",
		"tcp_tw_reuse_delay":  "10",
		"ip_local_port_range": "40000 44999",
	} {
		if _, err := setSysctl(name, value); err != nil {
			return err
		}
	}
	ln, err := net.Listen(network, net.JoinHostPort(addr, "0"))
	if err != nil {
		return err
	}
	var (
		conns, errCount atomic.Int64
		firstErr        atomic.Value
		servers         sync.WaitGroup
	)
	fail := func(err error) {
		errCount.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	go func() {
		for {
			s, err := ln.Accept()
			if err != nil {
				return // closed
			}
			servers.Go(func() {
				if _, err := io.ReadAll(s); err != nil {
					fail(err)
				}
				s.Close()
			})
		}
	}()
	start := time.Now()
	deadline := start.Add(d)
	every := time.Duration(workers) * time.Second / time.Duration(rate)
	var clients sync.WaitGroup
	for w := 0; w < workers; w++ {
		halfClose := w%2 == 1
		clients.Go(func() {
			for i := 0; ; i++ {
				at := start.Add(time.Duration(i) * every)
				if !at.Before(deadline) {
					return
				}
				time.Sleep(time.Until(at))
				c, err := net.Dial(network, ln.Addr().String())
				if err != nil {
					fail(err)
					continue
				}
				if _, err := c.Write(churnMsg); err != nil {
					fail(err)
				} else if halfClose {
					if err := c.(*net.TCPConn).CloseWrite(); err != nil {
						fail(err)
					} else if _, err := io.ReadAll(c); err != nil {
						fail(err)
					}
				}
				c.Close()
				conns.Add(1)
			}
		})
	}
	clients.Wait()
	servers.Wait()
	server := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	time.Sleep(20 * time.Millisecond)
	r := limitsReport{Step: "done", Server: server, Conns: int(conns.Load()), Errors: int(errCount.Load())}
	if e, ok := firstErr.Load().(string); ok {
		r.Error = e
	}
	return say(r)
}

// manyConnections makes n connections to its own listener, rate a second
// (so that a tracer keeps up), and holds both ends of all of them open; it
// reports the listening port and the clients' ports, then on "close"
// closes them all:
//
//   - orphan-burst: every client socket at once (close(): they wait,
//     orphaned, in FIN_WAIT2 for the server's FIN), the server sockets
//     500 ms later;
//   - hold-many: one connection after the other, rate a second, the
//     client half-closing first (client: FIN_WAIT1, FIN_WAIT2, TIME_WAIT;
//     server: CLOSE_WAIT, LAST_ACK, CLOSE), then the listener.
//
// Both sides of every connection belong to this process.
func manyConnections(role, network, addr string, n, rate int, say func(limitsReport) error, waitFor func(string) error) error {
	pace := func(start time.Time, i int) {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
	}
	ln, err := net.Listen(network, net.JoinHostPort(addr, "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	server := ln.Addr().(*net.TCPAddr).Port
	clients := make([]*net.TCPConn, 0, n)
	servers := make([]*net.TCPConn, 0, n)
	var d net.Dialer
	start := time.Now()
	for i := 0; i < n; i++ {
		pace(start, i)
		c, err := d.Dial(network, ln.Addr().String())
		if err != nil {
			return fmt.Errorf("connection %d of %d: %w", i, n, err)
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		clients = append(clients, c.(*net.TCPConn))
		servers = append(servers, s.(*net.TCPConn))
	}
	for i := 0; i < n; i += portsPerLine {
		r := limitsReport{Step: "ports", Server: server}
		for _, c := range clients[i:min(i+portsPerLine, n)] {
			r.Clients = append(r.Clients, c.LocalAddr().(*net.TCPAddr).Port)
		}
		if err := say(r); err != nil {
			return err
		}
	}
	if err := say(limitsReport{Step: "ready", Server: server, Conns: n}); err != nil {
		return err
	}
	if err := waitFor("close"); err != nil {
		return err
	}
	switch role {
	case "orphan-burst":
		for _, c := range clients {
			c.Close()
		}
		if err := say(limitsReport{Step: "clients-closed"}); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
		for _, s := range servers {
			s.Close()
		}
	case "hold-many":
		start := time.Now()
		for i, c := range clients {
			pace(start, i)
			if err := c.CloseWrite(); err != nil {
				return err
			}
			if _, err := io.ReadAll(servers[i]); err != nil {
				return err
			}
			servers[i].Close()
			if _, err := io.ReadAll(c); err != nil {
				return err
			}
			c.Close()
		}
	}
	ln.Close()
	time.Sleep(20 * time.Millisecond)
	return say(limitsReport{Step: "closed"})
}
