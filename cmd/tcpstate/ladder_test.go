// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/internal/testenv"
)

// recording is a real half-close, as the ladder package's live test
// recorded it with tcpstate --seq -o json.
const recording = "../../ladder/testdata/half-close-tcp4.jsonl"

func runLadderCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	if stdin != "" {
		f, err := os.CreateTemp(t.TempDir(), "in")
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(stdin)
		f.Seek(0, 0)
		old := os.Stdin
		os.Stdin = f
		defer func() { os.Stdin = old; f.Close() }()
	}
	code = run(context.Background(), append([]string{"ladder"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// Bad command lines and bad recordings: status 2, one line naming the flag.
func TestLadderBadInput(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	good, err := os.ReadFile(recording)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(good), "\n")
	os.WriteFile(bad, []byte(lines[0]+lines[1]+"GET / HTTP/1.1\n"), 0o644)
	cases := []struct {
		want  string
		stdin string
		args  []string
	}{
		{"--output", "", []string{"-o", "png"}},
		{"--count", "", []string{"--count", "-1"}},
		{"--count 2", "", []string{"-o", "svg", "--count", "2"}},
		{"--follow", "", []string{"--follow", "-o", "mermaid"}},
		{"--ascii", "", []string{"--ascii", "-o", "svg"}},
		{"--from", "", []string{"--from", "/nonexistent.jsonl"}},
		{`--from "` + bad + `": line 3: not a tcpstate event`, "", []string{"--from", bad}},
		{`line 1: no sequence numbers`, `{"time":"2026-11-25T21:03:04Z","skaddr":"0x1","family":"ipv4","oldstate":"CLOSE","newstate":"SYN_SENT"}` + "\n", []string{"--from", "-"}},
		{"--cgroup", "", []string{"--from", recording, "--cgroup", "/"}},
		{"--netns", "", []string{"--from", recording, "--netns", "/run/netns/x"}},
		{"--lport", "", []string{"--from", recording, "--lport", "0"}},
		{"--duration", "", []string{"--from", recording, "-d", "1s"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, stdout, stderr := runLadderCLI(t, c.stdin, c.args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], c.want) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q: want 2 and one line naming %q", code, stdout, stderr, c.want)
			}
		})
	}
}

// --from draws a recording exactly as the ladder package's golden file,
// in each format; the filters select whole connections.
func TestLadderFrom(t *testing.T) {
	golden := func(name string) string {
		b, err := os.ReadFile("../../ladder/testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, golden("half-close-tcp4.txt.golden")},
		{[]string{"--ascii", "--relative"}, golden("half-close-tcp4-ascii-relative.txt.golden")},
		{[]string{"-o", "mermaid"}, golden("half-close-tcp4.mmd.golden")},
		{[]string{"-o", "svg"}, golden("half-close-tcp4.svg.golden")},
		// The server's port selects the connection through either socket.
		{[]string{"--rport", serverPort(t)}, golden("half-close-tcp4.txt.golden")},
		{[]string{"--lport", serverPort(t), "--state", "last-ack"}, golden("half-close-tcp4.txt.golden")},
		{[]string{"--lport", "1"}, ""},
		{[]string{"--netns", "1"}, ""},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, stdout, stderr := runLadderCLI(t, "", append([]string{"--from", recording}, c.args...)...)
			if code != 0 || stdout != c.want {
				t.Errorf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, stderr, stdout, c.want)
			}
			n := "1"
			if c.want == "" {
				n = "0"
			}
			if stderr != n+" connections drawn\n" {
				t.Errorf("stderr %q", stderr)
			}
		})
	}
	// Two recordings in one stream, --count 1: one connection only.
	both := golden("../testdata/half-close-tcp4.jsonl") + golden("../testdata/reset-tcp6.jsonl")
	code, stdout, _ := runLadderCLI(t, both, "--from", "-", "--count", "1")
	if code != 0 || strings.Count(stdout, "TCP ") != 1 {
		t.Errorf("--count 1: exit %d:\n%s", code, stdout)
	}
	code, stdout, _ = runLadderCLI(t, both, "--from", "-")
	if code != 0 || strings.Count(stdout, "\nTCP ")+strings.Count(stdout[:4], "TCP ") != 2 {
		t.Errorf("two connections: exit %d:\n%s", code, stdout)
	}
}

// serverPort is the server's port in the recording: the client's rport.
func serverPort(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(recording)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var ev struct {
			NewState string `json:"newstate"`
			RPort    int    `json:"rport"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.NewState == "SYN_SENT" {
			return strconv.Itoa(ev.RPort)
		}
	}
	t.Fatal("no SYN_SENT in the recording")
	return ""
}

// The picture is well-formed XML, and rsvg-convert renders it.
func TestLadderSVGRenders(t *testing.T) {
	code, stdout, _ := runLadderCLI(t, "", "--from", recording, "-o", "svg")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	d := xml.NewDecoder(strings.NewReader(stdout))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("not XML: %v", err)
		}
	}
	if _, err := exec.LookPath("rsvg-convert"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("rsvg-convert missing (make test installs librsvg2-bin)")
		}
		t.Skip("rsvg-convert missing: apt-get install librsvg2-bin")
	}
	png := filepath.Join(t.TempDir(), "ladder.png")
	cmd := exec.Command("rsvg-convert", "-o", png)
	cmd.Stdin = strings.NewReader(stdout)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rsvg-convert: %v: %s", err, out)
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 10000 {
		t.Fatalf("rendered picture: %v, %d bytes", err, st.Size())
	}
}

// Live: the diagram of a loopback connection has both sides real, with
// their owner; Ctrl-C draws the connection waiting in TIME_WAIT.
func TestLadderLive(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t).Name
	cmd := exec.Command(bin, "ladder", "--netns", "/run/netns/"+ns)
	pid, out, rest := connectUntilInterrupt(t, cmd, ns, "Drawing each TCP connection")
	text := string(out)
	for _, want := range []string{"both ends on this host", "still open when drawn", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT"} {
		if !strings.Contains(text, want) {
			t.Errorf("diagram lacks %q:\n%s", want, text)
		}
	}
	if strings.Count(text, "pid "+strconv.Itoa(pid)+" ") != 2 {
		t.Errorf("want both sides owned by pid %d:\n%s", pid, text)
	}
	// The last line is the summary (notices about the host come before).
	if !strings.HasSuffix(string(rest), "\n1 connections drawn, 0 events lost\n") && string(rest) != "1 connections drawn, 0 events lost\n" {
		t.Errorf("stderr %q", rest)
	}
}

// --follow prints arrows as they come, and --count ends the run when the
// connection ends (a reset: no TIME_WAIT to wait for).
func TestLadderFollowCount(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t).Name
	cmd := exec.Command(bin, "ladder", "--follow", "--count", "1", "--netns", "/run/netns/"+ns)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	startedWith(t, cmd, "Drawing TCP connections as they happen")
	if out, err := testenv.Helper(ns, "reset").CombinedOutput(); err != nil {
		t.Fatalf("helper: %v %s", err, out)
	}
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(stdout); done <- b }()
	select {
	case out := <-done:
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"#1 TCP ", "SYN seq=", "RST seq=", "#1 ended\n"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("lacks %q:\n%s", want, out)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("--count 1 did not end when the connection did")
	}
}

func TestLadderHelpTeaches(t *testing.T) {
	code, stdout, _ := runLadderCLI(t, "", "--help")
	for _, want := range []string{"--from", "--follow", "--relative", "--count", "-o mermaid", "tcpdump -S", "--seq -o json", "inferred"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("exit %d; help lacks %q", code, want)
		}
	}
}
