// SPDX-License-Identifier: Apache-2.0

package main

// End-to-end tests of the built binary: what a user sees on the terminal
// and in a pipe. They need root, like the tool.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.Main(m, map[string]func([]string) error{
		"connect":           func([]string) error { return connectAndClose() },
		"reset":             func([]string) error { return connectAndReset() },
		"stuck":             stuckHelper,
		"metrics-scenarios": metricsScenarios,
		"dualstack":         dualStack,
	})
}

// connectAndClose makes one IPv4 connection on loopback and closes it.
func connectAndClose() error {
	ln, c, s, err := testenv.Connect("tcp4", "127.0.0.1")
	if err != nil {
		return err
	}
	defer ln.Close()
	c.Close()
	io.ReadAll(s)
	time.Sleep(10 * time.Millisecond)
	return s.Close()
}

// connectAndReset makes one IPv4 connection on loopback and resets it.
func connectAndReset() error {
	ln, c, s, err := testenv.Connect("tcp4", "127.0.0.1")
	if err != nil {
		return err
	}
	defer ln.Close()
	return testenv.Reset(c, s)
}

// build compiles the tool once per test binary run.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tcpstate")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func connectIn(t *testing.T, ns string) int {
	t.Helper()
	cmd := testenv.Helper(ns, "connect")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v %s", err, out)
	}
	return cmd.Process.Pid
}

// started starts the tool and waits until it says it is tracing.
func started(t *testing.T, cmd *exec.Cmd) *bufio.Reader {
	t.Helper()
	return startedWith(t, cmd, "Tracing TCP state transitions")
}

// connectUntilInterrupt starts the tool, makes a connection in the
// namespace ns, interrupts the tool (SIGINT) and returns the connecting
// process's pid, the tool's stdout and the rest of its stderr.
func connectUntilInterrupt(t *testing.T, cmd *exec.Cmd, ns, ready string) (pid int, stdout, stderr []byte) {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errs := startedWith(t, cmd, ready)
	pid = connectIn(t, ns)
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	stdout, _ = io.ReadAll(out)
	stderr, _ = io.ReadAll(errs)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGINT: %v (stderr %q)", err, stderr)
	}
	return pid, stdout, stderr
}

// startedWith starts the tool and waits for its first stderr line, which
// must begin with ready.
func startedWith(t *testing.T, cmd *exec.Cmd, ready string) *bufio.Reader {
	t.Helper()
	_, r := startedLine(t, cmd, ready)
	return r
}

// startedLine is startedWith returning that first line too.
func startedLine(t *testing.T, cmd *exec.Cmd, ready string) (string, *bufio.Reader) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := bufio.NewReader(stderr)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, ready) {
		t.Fatalf("first stderr line %q, %v", line, err)
	}
	return line, r
}

var summaryRe = regexp.MustCompile(`^(\d+) events, (\d+) lost\n$`)

// lifeSummaryRe is life's: it counts connections, and lost events.
var lifeSummaryRe = regexp.MustCompile(`^(\d+) connections, (\d+) events lost\n$`)

func TestJSONOutputAndSummary(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t).Name
	cmd := exec.Command(bin, "-o", "json", "--netns", "/run/netns/"+ns)
	pid, out, rest := connectUntilInterrupt(t, cmd, ns, "Tracing TCP state transitions")
	m := summaryRe.FindStringSubmatch(string(rest))
	if m == nil {
		t.Fatalf("stderr %q, want the 'N events, M lost' summary", rest)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// Listener 2, client 5 (the last FIN_WAIT2 -> TIME_WAIT), server child 5.
	if len(lines) != 12 || m[1] != "12" || m[2] != "0" {
		t.Fatalf("%d lines, summary %q, want 12 events and 0 lost:\n%s", len(lines), m[0], out)
	}
	keys := []string{"time", "skaddr", "pid", "comm", "family", "laddr", "lport", "raddr", "rport", "oldstate", "newstate", "in_state_us", "netns", "cgroup_id", "synthesized"}
	for i, line := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %d not JSON: %q", i, line)
		}
		if ev["pid"].(float64) != float64(pid) && ev["pid"].(float64) != 0 {
			t.Errorf("line %d: pid %v, want the helper's %d (or 0 before accept)", i, ev["pid"], pid)
		}
		if _, err := time.Parse(time.RFC3339Nano, ev["time"].(string)); err != nil {
			t.Errorf("line %d: time %v", i, ev["time"])
		}
		// Keys in the contract's order (in_state_us may be absent).
		dec := json.NewDecoder(strings.NewReader(line))
		dec.Token()
		k := 0
		for dec.More() {
			tok, _ := dec.Token()
			for k < len(keys) && keys[k] != tok {
				k++
			}
			if k == len(keys) {
				t.Fatalf("line %d: key %v out of order: %s", i, tok, line)
			}
			dec.Token()
		}
	}
}

// `tcpstate | head -1`: once the reader is gone the tool ends by itself,
// with status 0 and its summary on stderr, even if no further event comes.
func TestReaderGoneEndsWithSummary(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t).Name
	cmd := exec.Command(bin, "--netns", "/run/netns/"+ns)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	stderr := started(t, cmd)
	pw.Close()
	connectIn(t, ns)
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "TIME") {
		t.Fatalf("first line %q, %v", line, err)
	}
	pr.Close() // like head -1 after its line
	done := make(chan error, 1)
	var rest []byte
	go func() {
		rest, _ = io.ReadAll(stderr) // before Wait, which closes the pipe
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		// The summary last; "tcpstate: ..." notices may come before it.
		if err != nil || !regexp.MustCompile(`(^|\n)[0-9]+ events, [0-9]+ lost\n$`).Match(rest) {
			t.Errorf("exit %v, stderr %q; want status 0 and the summary last", err, rest)
		}
	case <-time.After(5 * time.Second):
		// It notices within a poll period (50 ms); unloading the BPF
		// programs takes a few RCU grace periods, slow on a loaded box.
		t.Fatal("still running 5s after its reader went away")
	}
}

func TestNotRootSaysSo(t *testing.T) {
	testenv.RequireRoot(t)
	bin := build(t)
	os.Chmod(filepath.Dir(bin), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(bin)), 0o755)
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1: %s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "root") || !strings.Contains(lines[0], "sudo") {
		t.Errorf("output %q: want one sentence saying to run as root", out)
	}
}

// An ssh session that drops sends SIGHUP: the tool ends as on Ctrl-C, with
// the last events and the summary, and status 0 (it used to die with 129).
func TestSIGHUPEndsCleanly(t *testing.T) {
	testenv.RequireRoot(t)
	bin := build(t)
	for _, tc := range []struct {
		args    []string
		ready   string         // the first stderr line
		summary *regexp.Regexp // the last, if any
	}{
		{[]string{"trace", "-d", "30s", "--lport", "9"}, "Tracing TCP state transitions", summaryRe},
		{[]string{"life", "-d", "30s", "--lport", "9"}, "Tracing TCP state transitions", lifeSummaryRe},
		{[]string{"stuck", "--watch", "-d", "30s", "--lport", "9"}, "Watching for TCP sockets", nil},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			r := startedWith(t, cmd, tc.ready)
			start := time.Now()
			cmd.Process.Signal(syscall.SIGHUP)
			rest, _ := io.ReadAll(r)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("after SIGHUP: %v (stderr %q)", err, rest)
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %s to end after SIGHUP", time.Since(start))
			}
			// The summary is the last line; "lost N events" notices may
			// come before it on a busy host.
			last := rest[bytes.LastIndexByte(bytes.TrimSuffix(rest, []byte("\n")), '\n')+1:]
			if tc.summary != nil && !tc.summary.Match(last) {
				t.Errorf("stderr after SIGHUP %q: want the summary %s last", rest, tc.summary)
			}
		})
	}
}

// Output that cannot be written is an error (status 1, one line "tcpstate:
// write output: ..."), found before tracing starts, not "N events" and
// status 0. Only a reader that went away (EPIPE) is no error.
//
// fd 1 open read-only makes every write fail with EBADF. (`>&-` cannot be
// tested so: the Go runtime opens /dev/null on a closed fd 0, 1 or 2 before
// main runs, so there the output is discarded as with >/dev/null.)
func TestWriteErrorIsReported(t *testing.T) {
	testenv.RequireRoot(t)
	bin := build(t)
	redirs := map[string]string{"1</dev/null": "bad file descriptor", ">/dev/full": "no space left on device"}
	for _, args := range [][]string{
		{"trace", "-d", "30s", "--lport", "9"},
		{"trace", "-o", "json", "-d", "30s", "--lport", "9"},
		{"life", "-o", "json", "-d", "30s", "--lport", "9"},
		{"stuck", "--watch", "-d", "30s", "--lport", "9"},
		{"ls", "--lport", "9"},
		{"stuck", "--lport", "9"},
	} {
		for redir, want := range redirs {
			t.Run(strings.Join(args, " ")+" "+redir, func(t *testing.T) {
				cmd := exec.Command("sh", append([]string{"-c", `exec "$0" "$@" ` + redir, bin}, args...)...)
				var stderr strings.Builder
				cmd.Stderr = &stderr
				start := time.Now()
				err := cmd.Run()
				ee, ok := err.(*exec.ExitError)
				if !ok || ee.ExitCode() != 1 {
					t.Fatalf("exit %v, stderr %q; want status 1", err, stderr.String())
				}
				if time.Since(start) > 10*time.Second {
					t.Errorf("took %s", time.Since(start))
				}
				lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
				if len(lines) != 1 || lines[0] != "tcpstate: write output: "+want {
					t.Errorf("stderr %q; want the one line %q", stderr.String(), "tcpstate: write output: "+want)
				}
			})
		}
	}
}

// Without CAP_SYS_PTRACE, ls and stuck cannot read other users'
// /proc/PID/fd: they refuse with one sentence and status 1, rather than
// show root's sockets as held by nobody with status 0.
func TestLsAndStuckNotRootSaySo(t *testing.T) {
	testenv.RequireRoot(t)
	bin := build(t)
	os.Chmod(filepath.Dir(bin), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(bin)), 0o755)
	// In its own namespace no other needs entering: ls used to answer.
	own := []string{"--netns", "/proc/self/ns/net"}
	for _, args := range [][]string{
		{"ls"}, append([]string{"ls", "--by", "process"}, own...), append([]string{"stuck", "--pid", "1"}, own...),
		{"stuck"}, {"stuck", "--watch", "-d", "1s"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			cmd := exec.Command(bin, args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want 1: %s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "tcpstate: "+args[0]+" needs root") ||
				!strings.Contains(lines[0], "CAP_SYS_PTRACE") || !strings.Contains(lines[0], "sudo") {
				t.Errorf("output %q: want one sentence saying to run as root or grant CAP_SYS_PTRACE", out)
			}
		})
	}
}

// --netns: a TIME_WAIT of the namespace when it is deleted ends with it
// (the kernel removes it a moment later): the trace waits to show that
// end before it ends.
func TestNetnsGoneShowsItsTimeWaitEnds(t *testing.T) {
	testenv.RequireRoot(t)
	bin := build(t)
	ns := testenv.NewNetns(t).Name
	var stdout bytes.Buffer
	cmd := exec.Command(bin, "-o", "json", "--netns", "/run/netns/"+ns, "-d", "60s")
	cmd.Stdout = &stdout
	r := started(t, cmd)
	if out, err := testenv.Helper(ns, "connect").CombinedOutput(); err != nil {
		t.Fatalf("connect: %v: %s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	rest, _ := io.ReadAll(r)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after the namespace was deleted: %v (stderr %q)", err, rest)
	}
	var entered, ended int
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var ev struct{ Oldstate, Newstate string }
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		switch {
		case ev.Newstate == "TIME_WAIT":
			entered++
		case ev.Oldstate == "TIME_WAIT" && ev.Newstate == "CLOSE":
			ended++
		}
	}
	if entered != 1 || ended != 1 {
		t.Errorf("%d TIME_WAIT entered, %d ended, want 1 and 1; output:\n%s\nstderr:\n%s", entered, ended, stdout.String(), rest)
	}
	if strings.Contains(string(rest), "still followed") {
		t.Errorf("stderr %q: the TIME_WAIT was not seen to end", rest)
	}
}

// --netns: when the namespace is deleted, tracing says so and ends with
// the summary, status 0.
func TestNetnsGoneEndsTrace(t *testing.T) {
	testenv.RequireRoot(t)
	bin := build(t)
	for _, command := range []string{"trace", "life"} {
		t.Run(command, func(t *testing.T) {
			ns := testenv.NewNetns(t).Name
			cmd := exec.Command(bin, command, "--netns", "/run/netns/"+ns, "-d", "60s")
			r := started(t, cmd)
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Fatalf("ip netns del: %v: %s", err, out)
			}
			deleted := time.Now()
			rest, _ := io.ReadAll(r)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("after the namespace was deleted: %v (stderr %q)", err, rest)
			}
			if d := time.Since(deleted); d > 5*time.Second {
				t.Errorf("ended %s after the namespace was deleted, want within about a second", d)
			}
			lines := strings.Split(strings.TrimSpace(string(rest)), "\n")
			want := "tcpstate: network namespace /run/netns/" + ns + " is gone (no process is in it and no file names it); ending"
			if len(lines) != 2 || lines[0] != want {
				t.Fatalf("stderr %q, want %q and the summary", rest, want)
			}
			re := summaryRe
			if command == "life" {
				re = lifeSummaryRe
			}
			if !re.MatchString(lines[1] + "\n") {
				t.Errorf("summary %q, want %s", lines[1], re)
			}
		})
	}
}
