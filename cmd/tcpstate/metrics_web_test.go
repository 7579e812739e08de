// SPDX-License-Identifier: Apache-2.0

package main

// tcpstate metrics against clients that hold connections, and out of file
// descriptors.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/internal/testenv"
)

// holdConns opens n connections to addr, sends one GET /-/healthy on
// each and reads its answer, and keeps them open.
func holdConns(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatalf("connection %d: %v", len(conns), err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns), err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return conns
}

// stillOpen counts the connections the server has not closed.
func stillOpen(conns []net.Conn) int {
	n := 0
	var b [1]byte
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(b[:]); err != nil && os.IsTimeout(err) {
			n++
		}
	}
	return n
}

// procStatus returns the tool's resident memory in KiB and its open
// file descriptors.
func procStatus(t *testing.T, pid int) (rssKiB, fds int) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rssKiB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return rssKiB, len(ents)
}

// scrape gets /metrics and fails the test unless it answers 200 with the
// build info.
func scrape(t *testing.T, addr string) {
	t.Helper()
	scrapeBody(t, addr)
}

// scrapeBody is scrape returning the exposition.
func scrapeBody(t *testing.T, addr string) string {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "tcpstate_build_info") {
		t.Fatalf("scrape: status %d, body without tcpstate_build_info", resp.StatusCode)
	}
	return string(body)
}

// A client holding thousands of keep-alive connections: tcpstate keeps
// --web.max-connections of them (the newest), its memory and descriptors
// stay bounded, a scrape is answered meanwhile, and the idle ones are
// closed after the idle timeout.
func TestMetricsHeldConnections(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t)
	addr := freePort(t)
	cmd := exec.Command(bin, "metrics", "--listen", addr, "--netns", ns.Path, "--web.max-connections", "50")
	startedWith(t, cmd, "Serving Prometheus metrics on "+addr)
	waitHTTP(t, "http://"+addr+"/-/ready")
	scrape(t, addr)
	rss0, fds0 := procStatus(t, cmd.Process.Pid)

	const held = 5000
	start := time.Now()
	conns := holdConns(t, addr, held)
	t.Logf("%d connections opened in %s", held, time.Since(start).Round(time.Millisecond))
	time.Sleep(200 * time.Millisecond)
	if n := stillOpen(conns); n != 50 {
		t.Errorf("%d of %d held connections open, want 50 (--web.max-connections)", n, held)
	}
	rss, fds := procStatus(t, cmd.Process.Pid)
	t.Logf("before: RSS %d KiB, %d fds; holding %d: RSS %d KiB, %d fds", rss0, fds0, held, rss, fds)
	if fds > fds0+50 {
		t.Errorf("%d fds with %d connections held, want at most %d (%d + 50)", fds, held, fds0+50, fds0)
	}
	if rss > rss0+32<<10 {
		t.Errorf("RSS %d KiB with %d connections held, want under %d KiB (32 MiB over %d)", rss, held, rss0+32<<10, rss0)
	}
	start = time.Now()
	scrape(t, addr)
	t.Logf("scrape while %d connections are held: %s", held, time.Since(start).Round(time.Millisecond))

	time.Sleep(idleTimeout + time.Second)
	if n := stillOpen(conns); n != 0 {
		t.Errorf("%d held connections open after the idle timeout (%s), want 0", n, idleTimeout)
	}
	if _, fds := procStatus(t, cmd.Process.Pid); fds > fds0 {
		t.Errorf("%d fds after the idle timeout, want at most %d as before", fds, fds0)
	}
}

// Out of file descriptors, tcpstate metrics goes on: it says it cannot
// check its --netns namespace, keeps counting, and answers scrapes once
// descriptors are free again.
func TestMetricsOutOfFilesGoesOn(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t)
	addr := freePort(t)
	cmd := exec.Command(bin, "metrics", "--listen", addr, "--netns", ns.Path, "--web.max-connections", "1000")
	r := startedWith(t, cmd, "Serving Prometheus metrics on "+addr)
	waitHTTP(t, "http://"+addr+"/-/ready")
	_, fds0 := procStatus(t, cmd.Process.Pid)
	limit := uint64(fds0 + 20)
	if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Fatal(err)
	}
	// Connections the server cannot accept wait in the kernel's queue;
	// those it accepts take its last descriptors.
	var conns []net.Conn
	for range 100 {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(3 * time.Second)
	// Ended, it would be a zombie until Wait.
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid)); err != nil || strings.Contains(string(stat), ") Z ") {
		rest, _ := io.ReadAll(r)
		t.Fatalf("tcpstate ended while out of file descriptors (stat %q, %v); stderr %q", stat, err, rest)
	}
	for _, c := range conns {
		c.Close()
	}
	time.Sleep(1500 * time.Millisecond)
	scrape(t, addr)
	cmd.Process.Signal(syscall.SIGINT)
	rest, _ := io.ReadAll(r)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGINT: %v (stderr %q)", err, rest)
	}
	want := "tcpstate: cannot check that network namespace " + ns.Path + " is still there: "
	if !strings.Contains(string(rest), "\n"+want) && !strings.HasPrefix(string(rest), want) {
		t.Errorf("stderr %q, want a line starting %q", rest, want)
	}
	if n := strings.Count(string(rest), want); n != 1 {
		t.Errorf("%q said %d times, want once", want, n)
	}
	if again := "tcpstate: network namespace " + ns.Path + " checked again\n"; !strings.Contains(string(rest), again) {
		t.Errorf("stderr %q, want %q", rest, again)
	}
}

// --listen with port 0 names the port the kernel chose.
func TestMetricsListenPortZero(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t)
	line, _ := startedLine(t, exec.Command(bin, "metrics", "--listen", "127.0.0.1:0", "--netns", ns.Path), "Serving Prometheus metrics on 127.0.0.1:")
	addr, _, _ := strings.Cut(strings.TrimPrefix(line, "Serving Prometheus metrics on "), "/metrics")
	if _, port, _ := net.SplitHostPort(addr); port == "" || port == "0" {
		t.Fatalf("first line %q, want the address listened on", line)
	}
	waitHTTP(t, "http://"+addr+"/-/ready")
	scrape(t, addr)
}

// metrics whose --netns namespace is deleted says so and exits with
// status 3: it ended on its own, which a supervisor restarts.
func TestMetricsNetnsGoneExitsThree(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t)
	addr := freePort(t)
	cmd := exec.Command(bin, "metrics", "--listen", addr, "--netns", ns.Path)
	r := startedWith(t, cmd, "Serving Prometheus metrics on "+addr)
	waitHTTP(t, "http://"+addr+"/-/ready")
	if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	rest, _ := io.ReadAll(r)
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("exit %d (%v), want 3; stderr %q", code, err, rest)
	}
	lines := strings.Split(strings.TrimSpace(string(rest)), "\n")
	want := "tcpstate: network namespace " + ns.Path + " is gone (no process is in it and no file names it); ending"
	if len(lines) != 2 || lines[0] != want || lines[1] != "0 transitions lost" {
		t.Errorf("stderr %q, want %q and the summary", rest, want)
	}
}
