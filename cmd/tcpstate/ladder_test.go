// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
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
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, stdout, stderr := runLadderCLI(t, "", append([]string{"--from", recording}, c.args...)...)
			if code != 0 || stdout != c.want {
				t.Errorf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, stderr, stdout, c.want)
			}
			if stderr != "1 connection drawn\n" {
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
// their owner, and is drawn while the client's TIME_WAIT still runs.
func TestLadderLive(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t).Name
	cmd := exec.Command(bin, "ladder", "--netns", "/run/netns/"+ns)
	pid, out, rest := connectUntilInterrupt(t, cmd, ns, "Drawing each TCP connection")
	text := string(out)
	for _, want := range []string{"both ends on this host", "TIME_WAIT still running when drawn", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT"} {
		if !strings.Contains(text, want) {
			t.Errorf("diagram lacks %q:\n%s", want, text)
		}
	}
	if strings.Count(text, "pid "+strconv.Itoa(pid)+" ") != 2 {
		t.Errorf("want both sides owned by pid %d:\n%s", pid, text)
	}
	// The last line is the summary (notices about the host come before).
	if !strings.HasSuffix(string(rest), "\n1 connection drawn, 0 events lost\n") && string(rest) != "1 connection drawn, 0 events lost\n" {
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

// --count 1 answers as soon as the connection is closed: the client,
// which closed first, is in TIME_WAIT for 60 s more, not waited for.
func TestLadderCountDoesNotWaitOutTimeWait(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t).Name
	cmd := exec.Command(bin, "ladder", "--count", "1", "--netns", "/run/netns/"+ns)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errs := startedWith(t, cmd, "Drawing each TCP connection")
	connectIn(t, ns)
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(stdout); done <- b }()
	select {
	case out := <-done:
		rest, _ := io.ReadAll(errs)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%v: %s", err, rest)
		}
		if !strings.Contains(string(out), "TIME_WAIT still running when drawn\n") || !strings.Contains(string(out), "TIME_WAIT │") {
			t.Errorf("want the client drawn in TIME_WAIT:\n%s", out)
		}
		if !strings.HasSuffix(string(rest), "1 connection drawn, 0 events lost\n") {
			t.Errorf("stderr %q", rest)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("--count 1 did not end within 10 s of the close")
	}
}

// writeWaves writes a recording of waves of loopback connections, n open
// at once in each, closed by the clients first; each client's TIME_WAIT
// ends 60 s after it began, after the next wave has begun.
func writeWaves(t *testing.T, waves, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "waves.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	start := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	line := func(at time.Duration, cookie uint64, lport, rport int, from, to string) {
		fmt.Fprintf(w, `{"time":%q,"family":"ipv4","laddr":"127.0.0.1","lport":%d,"raddr":"127.0.0.1","rport":%d,`+
			`"oldstate":%q,"newstate":%q,"netns":1,"snd_una":1,"snd_nxt":1,"rcv_nxt":1,"cookie":%d}`+"\n",
			start.Add(at).Format(time.RFC3339Nano), lport, rport, from, to, cookie)
	}
	var tws []func()
	for wave := range waves {
		at := time.Duration(wave) * 10 * time.Second
		for i := range n {
			c, s, port := uint64(2*(wave*n+i)+1), uint64(2*(wave*n+i)+2), 10000+i
			line(at, c, port, 80, "CLOSE", "SYN_SENT")
			line(at, c, port, 80, "SYN_SENT", "ESTABLISHED")
			line(at, s, 80, port, "LISTEN", "SYN_RECV")
			line(at, s, 80, port, "SYN_RECV", "ESTABLISHED")
		}
		at += time.Second
		for i := range n {
			c, s, port := uint64(2*(wave*n+i)+1), uint64(2*(wave*n+i)+2), 10000+i
			line(at, c, port, 80, "ESTABLISHED", "FIN_WAIT1")
			line(at, s, 80, port, "ESTABLISHED", "CLOSE_WAIT")
			line(at, s, 80, port, "CLOSE_WAIT", "LAST_ACK")
			line(at, c, port, 80, "FIN_WAIT1", "FIN_WAIT2")
			line(at, c, port, 80, "FIN_WAIT2", "TIME_WAIT")
			line(at, s, 80, port, "LAST_ACK", "CLOSE")
			tws = append(tws, func() { line(at+60*time.Second, c, port, 80, "TIME_WAIT", "CLOSE") })
		}
	}
	for _, tw := range tws {
		tw()
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// 4,200 connections open at once, twice: 4096 followed each time, 104 not,
// counted as connections (not their 208 sockets); those done but for
// TIME_WAIT leave the table at once, so the second wave is followed too.
func TestLadderFromCountsConnections(t *testing.T) {
	path := writeWaves(t, 2, 4200)
	code, stdout, stderr := runLadderCLI(t, "", "--from", path)
	want := "tcpstate: more than 4096 connections open at once: new ones are not followed (counted at exit)\n" +
		"8192 connections drawn, 208 not followed (more than 4096 open at once)\n"
	if code != 0 || stderr != want {
		t.Errorf("exit %d, stderr %q, want %q", code, stderr, want)
	}
	if n := strings.Count(stdout, "TIME_WAIT still running when drawn\n"); n != 8192 {
		t.Errorf("%d diagrams in TIME_WAIT, want 8192", n)
	}
}

// Nothing to draw is no success: status 1 and one line saying why, not
// an empty picture.
func TestLadderNothingToDraw(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.jsonl")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	listener := `{"time":"2026-11-25T21:03:04Z","skaddr":"0x1","family":"ipv4","laddr":"127.0.0.1","lport":80,"raddr":"0.0.0.0","rport":0,` +
		`"oldstate":"CLOSE","newstate":"LISTEN","snd_una":0,"snd_nxt":0,"rcv_nxt":0}` + "\n"
	for _, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"--from", recording, "--lport", "9999", "-o", "svg"}, `--from "` + recording + `": the only connection does not match the filters`},
		{"", []string{"--from", empty, "-o", "svg"}, `--from "` + empty + `": no tcpstate event`},
		{"\n", []string{"--from", "-"}, `--from "-": no tcpstate event`},
		{listener, []string{"--from", "-"}, `--from "-": 1 event, but no connection (listening sockets, or ends of connections that began before)`},
		{"", []string{"--from", recording, "--netns", "1"}, `--from "` + recording + `" in network namespace 1: no tcpstate event`},
		{"", []string{"--from", recording, "--state", "time-wait", "--lport", "1"}, `--from "` + recording + `": the only connection does not match the filters`},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, stdout, stderr := runLadderCLI(t, c.stdin, c.args...)
			if want := "tcpstate: nothing to draw from " + c.want + "\n"; code != 1 || stdout != "" || stderr != want {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, stdout, stderr, want)
			}
		})
	}
}

// -o svg draws one connection, and says how many more were selected.
func TestLadderSVGSaysItDrewOne(t *testing.T) {
	both := readFile(t, recording) + readFile(t, "../../ladder/testdata/reset-tcp6.jsonl")
	code, stdout, stderr := runLadderCLI(t, both, "--from", "-", "-o", "svg")
	if code != 0 || stdout != readFile(t, "../../ladder/testdata/half-close-tcp4.svg.golden") || stderr != "1 connection drawn, 1 more selected (one picture: select it with the filters)\n" {
		t.Errorf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
}

// Events out of time order are put back in order within a window, and
// refused past it, naming the line: never drawn as false claims.
func TestLadderFromOutOfOrder(t *testing.T) {
	golden := readFile(t, "../../ladder/testdata/half-close-tcp4.txt.golden")
	lines := strings.SplitAfter(strings.TrimSuffix(readFile(t, recording), "\n"), "\n")
	tac := func(lines []string) string {
		var s strings.Builder
		for i := len(lines) - 1; i >= 0; i-- {
			s.WriteString(strings.TrimSuffix(lines[i], "\n") + "\n")
		}
		return s.String()
	}
	code, stdout, stderr := runLadderCLI(t, tac(lines), "--from", "-")
	if code != 0 || stdout != golden || stderr != "1 connection drawn\n" {
		t.Errorf("tac: exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, stderr, stdout, golden)
	}
	// 600 copies of the connection, a second apart: 7,200 lines, the
	// reversed file's line 4098 is earlier than line 4097, already drawn.
	var many []string
	for k := range 600 {
		for _, l := range lines {
			var ev map[string]any
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatal(err)
			}
			at, err := time.Parse(time.RFC3339Nano, ev["time"].(string))
			if err != nil {
				t.Fatal(err)
			}
			ev["time"] = at.Add(time.Duration(k) * time.Second)
			ev["cookie"] = ev["cookie"].(float64) + float64(10*k)
			j, _ := json.Marshal(ev)
			many = append(many, string(j))
		}
	}
	code, stdout, stderr = runLadderCLI(t, tac(many), "--from", "-")
	errLines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != 2 || stdout != "" || len(errLines) != 1 ||
		!strings.HasPrefix(errLines[0], `tcpstate: invalid --from "-": line 4098: out of time order: `) ||
		!strings.HasSuffix(errLines[0], ` before line 4097, already drawn: events are put back in order within 4096 lines only (sort the recording by time)`) {
		t.Errorf("reversed, 7,200 lines: exit %d, stdout %d bytes, stderr %q", code, len(stdout), stderr)
	}
	// In order, the same lines draw 600 connections.
	code, _, stderr = runLadderCLI(t, strings.Join(many, "\n")+"\n", "--from", "-")
	if code != 0 || stderr != "600 connections drawn\n" {
		t.Errorf("in order: exit %d, stderr %q", code, stderr)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
