// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv marks the re-executed process that generates the load inside a
// fresh network namespace.
const childEnv = "TCPSTATE_BENCH_LOAD"

// loadConfig is what the parent passes to the load child.
type loadConfig struct {
	Workload string        `json:"workload"` // workloadChurn, ...
	Conns    int           `json:"conns"`
	Warmup   time.Duration `json:"warmup"`
	Duration time.Duration `json:"duration"`
	ParentNS string        `json:"parent_ns"` // checked before changing sysctls
}

// loadResult is what the load child prints on stdout.
type loadResult struct {
	Conns   int64   `json:"conns"`   // completed during the measured window
	Total   int64   `json:"total"`   // completed including the warm-up
	Seconds float64 `json:"seconds"` // length of the measured window
	Errors  int64   `json:"errors"`
	// TimeWaits is the namespace's TcpExtTW at the end: the TIME_WAITs
	// the kernel made (in __inet_twsk_schedule).
	TimeWaits int64 `json:"time_waits"`
	// FirstError helps when Errors is not 0.
	FirstError string `json:"first_error,omitempty"`
}

// runLoad re-executes this binary in a new network namespace, so that the
// sysctls it changes and the TIME_WAIT sockets it leaves never touch the
// host, and returns what the child measured.
func runLoad(cfg loadConfig) (loadResult, error) {
	var res loadResult
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return res, err
	}
	cfg.ParentNS = ns
	arg, err := json.Marshal(cfg)
	if err != nil {
		return res, err
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), childEnv+"="+string(arg))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.Output()
	if err != nil {
		return res, fmt.Errorf("load child: %w", err)
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return res, fmt.Errorf("load child output %q: %w", out, err)
	}
	if res.Conns == 0 {
		return res, fmt.Errorf("load child completed no connection (%d errors, first: %s)", res.Errors, res.FirstError)
	}
	return res, nil
}

// loadChild is the body of the re-executed process.
func loadChild(arg string) error {
	var cfg loadConfig
	if err := json.Unmarshal([]byte(arg), &cfg); err != nil {
		return err
	}
	if err := setupNetns(cfg.ParentNS); err != nil {
		return err
	}
	var res loadResult
	var err error
	switch cfg.Workload {
	case workloadHTTP, workloadKeepalive:
		res, err = generateHTTP(cfg)
	case workloadSyscalls:
		res, err = generateSyscalls(cfg)
	default:
		res, err = generate(cfg)
	}
	if err != nil {
		return err
	}
	res.TimeWaits = netstat("TcpExt", "TW")
	return json.NewEncoder(os.Stdout).Encode(res)
}

// setupNetns brings up lo and widens the port range in the new namespace.
// Clients close first, so the TIME_WAIT sockets are theirs; tcp_tw_reuse
// lets connect() reuse such a port after a second, and 64k ports are far
// more than a second's worth of connections.
func setupNetns(parentNS string) error {
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return err
	}
	if ns == parentNS {
		return errors.New("load child is in its parent's network namespace; refusing to change sysctls")
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	for file, val := range map[string]string{
		"/proc/sys/net/ipv4/ip_local_port_range": "1024 65535",
		"/proc/sys/net/ipv4/tcp_tw_reuse":        "1",
	} {
		if err := os.WriteFile(file, []byte(val), 0); err != nil {
			return err
		}
	}
	return nil
}

// msg is what each connection carries: write 16 bytes, read them back.
var msg = []byte("tcpstate-bench!\n")

// generate runs an echo server and cfg.Conns clients that connect, write,
// read the echo and close, for cfg.Warmup and then cfg.Duration.
func generate(cfg loadConfig) (loadResult, error) {
	var res loadResult
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	defer ln.Close()
	go serve(ln)
	addr := ln.Addr().String()

	var (
		done     atomic.Bool
		count    atomic.Int64
		errCount atomic.Int64
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	for range cfg.Conns {
		wg.Go(func() {
			buf := make([]byte, len(msg))
			for !done.Load() {
				if err := echo(addr, buf); err != nil {
					errCount.Add(1)
					errOnce.Do(func() { res.FirstError = err.Error() })
					continue
				}
				count.Add(1)
			}
		})
	}
	time.Sleep(cfg.Warmup)
	start, startCount := time.Now(), count.Load()
	time.Sleep(cfg.Duration)
	end, endCount := time.Now(), count.Load()
	done.Store(true)
	wg.Wait()

	res.Conns = endCount - startCount
	res.Total = count.Load()
	res.Seconds = end.Sub(start).Seconds()
	res.Errors = errCount.Load()
	return res, nil
}

// echo makes one client connection.
func echo(addr string, buf []byte) error {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		return err
	}
	_, err = io.ReadFull(c, buf)
	return err
}

func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return // the listener was closed
		}
		go func() {
			defer c.Close()
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
			// Wait for the client's FIN so that the client closes first
			// and keeps the TIME_WAIT socket.
			c.Read(buf)
		}()
	}
}

// netstat reads one counter of this namespace's /proc/net/netstat (0 if
// it is not there).
func netstat(group, name string) int64 {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(keys) == 0 || keys[0] != group+":" || len(vals) != len(keys) {
			continue
		}
		for j, k := range keys {
			if k == name {
				n, _ := strconv.ParseInt(vals[j], 10, 64)
				return n
			}
		}
	}
	return 0
}
