// SPDX-License-Identifier: Apache-2.0

package main

// Tests of 'tcpstate stuck' (and, in ls_test.go, 'tcpstate ls') against
// sockets left in CLOSE_WAIT, FIN_WAIT2 and TIME_WAIT by helper processes
// in a fresh network namespace. They need root.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/internal/testenv"
)

// stuckReport is what the helper prints once its sockets are in place.
type stuckReport struct {
	Pid   int         `json:"pid"`
	Port  int         `json:"port"` // the listener's
	Conns []stuckConn `json:"conns"`
	// Child holds the server socket of Conns[0] too, on fd 3; the helper
	// also holds it on a second fd (the last of ServerFDs).
	Child int `json:"child"`
}

type stuckConn struct {
	Client    int   `json:"client"` // the client's local port
	ClientFD  int   `json:"client_fd"`
	ServerFDs []int `json:"server_fds"`
}

// stuckHelper makes n connections on loopback whose client sends unread
// bytes and shuts down sending (the client stays in FIN_WAIT2, the server
// socket in CLOSE_WAIT, neither closed), and tw connections closed by the
// client first (it stays in TIME_WAIT). Args: network, n, unread, tw,
// share (1: share the first server socket with a child process).
// Reading "close" on stdin reads and closes the server sockets.
func stuckHelper(args []string) error {
	if len(args) != 5 {
		return errors.New("want network,n,unread,tw,share")
	}
	network := args[0]
	n, _ := strconv.Atoi(args[1])
	unread, _ := strconv.Atoi(args[2])
	tw, _ := strconv.Atoi(args[3])
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	rep := stuckReport{Pid: os.Getpid(), Port: ln.Addr().(*net.TCPAddr).Port}
	var keep []io.Closer
	var servers []*net.TCPConn
	var extraFDs []int
	for range n {
		c, err := net.Dial(network, ln.Addr().String())
		if err != nil {
			return err
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		cc, sc := c.(*net.TCPConn), s.(*net.TCPConn)
		if _, err := cc.Write(bytes.Repeat([]byte{'x'}, unread)); err != nil {
			return err
		}
		if err := cc.CloseWrite(); err != nil {
			return err
		}
		keep = append(keep, cc)
		servers = append(servers, sc)
		rep.Conns = append(rep.Conns, stuckConn{Client: cc.LocalAddr().(*net.TCPAddr).Port, ClientFD: fdOf(cc), ServerFDs: []int{fdOf(sc)}})
	}
	var child *exec.Cmd
	if args[4] == "1" && n > 0 {
		dup, err := unix.FcntlInt(uintptr(rep.Conns[0].ServerFDs[0]), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return err
		}
		extraFDs = append(extraFDs, dup)
		rep.Conns[0].ServerFDs = append(rep.Conns[0].ServerFDs, dup)
		f := os.NewFile(uintptr(dup), "shared")
		child = exec.Command("sleep", "600")
		child.ExtraFiles = []*os.File{f}
		child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := child.Start(); err != nil {
			return err
		}
		defer child.Process.Kill()
		rep.Child = child.Process.Pid
	}
	for range tw {
		c, err := net.Dial(network, ln.Addr().String())
		if err != nil {
			return err
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		c.Close()
		io.ReadAll(s)
		s.Close()
	}
	time.Sleep(100 * time.Millisecond) // the last ACKs and FINs arrive
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "close" {
			// Read first: closing with unread data would send RST, not FIN.
			for _, s := range servers {
				io.ReadAll(s)
				s.Close()
			}
			for _, fd := range extraFDs {
				syscall.Close(fd)
			}
			if child != nil {
				child.Process.Kill()
				child.Wait()
			}
			fmt.Println(`{"closed":true}`)
		}
		if in.Text() == "poke" { // data from the server: ACKs come back
			for _, s := range servers {
				s.Write([]byte("!"))
			}
			time.Sleep(100 * time.Millisecond)
			fmt.Println(`{"poked":true}`)
		}
	}
	for _, c := range keep {
		c.Close()
	}
	return ln.Close()
}

func fdOf(c syscall.Conn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// stuckHelperProc is a running helper.
type stuckHelperProc struct {
	stuckReport
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Scanner
	started time.Time // before it started: its sockets are younger
	made    time.Time // when its sockets were all in place
}

func startStuckHelper(t *testing.T, ns, network string, n, unread, tw int, share bool) *stuckHelperProc {
	t.Helper()
	sh := "0"
	if share {
		sh = "1"
	}
	cmd := testenv.Helper(ns, "stuck", network, strconv.Itoa(n), strconv.Itoa(unread), strconv.Itoa(tw), sh)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	h := &stuckHelperProc{cmd: cmd, in: in, out: bufio.NewScanner(out), started: started}
	if !h.out.Scan() {
		cmd.Wait()
		t.Fatalf("helper ended: %s", stderr.String())
	}
	if err := json.Unmarshal(h.out.Bytes(), &h.stuckReport); err != nil {
		t.Fatalf("helper said %q: %v", h.out.Text(), err)
	}
	h.made = time.Now()
	return h
}

// closeServers makes the helper read and close its server sockets.
func (h *stuckHelperProc) closeServers(t *testing.T) {
	t.Helper()
	fmt.Fprintln(h.in, "close")
	if !h.out.Scan() || !strings.Contains(h.out.Text(), "closed") {
		t.Fatalf("helper did not close: %q", h.out.Text())
	}
}

// poke makes the helper send a byte on its server sockets: the ACKs that
// come back hide when the sockets entered CLOSE_WAIT and FIN_WAIT2.
func (h *stuckHelperProc) poke(t *testing.T) {
	t.Helper()
	fmt.Fprintln(h.in, "poke")
	if !h.out.Scan() || !strings.Contains(h.out.Text(), "poked") {
		t.Fatalf("helper did not poke: %q", h.out.Text())
	}
}

// cli runs tcpstate in this process.
func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return o.String(), e.String(), code
}

// jsonLines decodes NDJSON output.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var rows []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", l, err)
		}
		rows = append(rows, m)
	}
	return rows
}

func nsInode(t *testing.T, ns string) float64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns, &st); err != nil {
		t.Fatal(err)
	}
	return float64(st.Ino)
}

func testComm() string {
	c := filepath.Base(os.Args[0])
	if len(c) > 15 {
		c = c[:15]
	}
	return c
}

type owner struct {
	Pid  int
	Comm string
	FD   int
}

func ownersOf(row map[string]any) []owner {
	var out []owner
	for _, o := range row["owners"].([]any) {
		m := o.(map[string]any)
		out = append(out, owner{int(m["pid"].(float64)), m["comm"].(string), int(m["fd"].(float64))})
	}
	return out
}

func num(row map[string]any, key string) int { f, _ := row[key].(float64); return int(f) }

// ssRecvQ returns ss's Recv-Q of the sockets in a state, by
// "local peer", or nil when ss is not installed.
func ssRecvQ(t *testing.T, ns, state string) map[string]int {
	t.Helper()
	if _, err := exec.LookPath("ss"); err != nil {
		t.Log("ss not installed: Recv-Q not compared with it")
		return nil
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-tnH", "state", state).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	q := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 {
			n, _ := strconv.Atoi(f[0])
			q[f[2]+" "+f[3]] = n
		}
	}
	return q
}

func endpoint(addr string, port int) string {
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

func TestStuckFindsCloseWaitAndFinWait2(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t).Name
	path := "/run/netns/" + ns
	const n, unread, tw = 3, 1000, 2
	helpers := map[string]*stuckHelperProc{
		"127.0.0.1": startStuckHelper(t, ns, "tcp4", n, unread, tw, true),
		"::1":       startStuckHelper(t, ns, "tcp6", n, unread, tw, false),
	}
	time.Sleep(2*time.Second - time.Since(helpers["::1"].made))

	// --for 1s, after 2 s: every CLOSE_WAIT and FIN_WAIT2 socket, nothing else.
	out, errOut, code := cli(t, "stuck", "--netns", path, "--for", "1s", "-o", "json")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	rows := jsonLines(t, out)
	if len(rows) != 4*n {
		t.Errorf("%d stuck sockets, want %d:\n%s", len(rows), 4*n, out)
	}
	ssq := ssRecvQ(t, ns, "close-wait")
	type found struct{ cw, fw2 int }
	seen := map[string]*found{}
	for _, r := range rows {
		lport, rport := num(r, "lport"), num(r, "rport")
		h := helpers[r["laddr"].(string)]
		if h == nil || r["raddr"] != r["laddr"] {
			t.Errorf("unexpected socket %v", r)
			continue
		}
		fam := map[string]string{"127.0.0.1": "ipv4", "::1": "ipv6"}[r["laddr"].(string)]
		if r["family"] != fam || r["netns"] != nsInode(t, ns) {
			t.Errorf("family %v netns %v: %v", r["family"], r["netns"], r)
		}
		age := time.Duration(num(r, "age_us")) * time.Microsecond
		// Estimated: a lower bound, so no more than the time since the
		// helper started; the kernel's jiffies may make it one jiffy
		// short of the 2 s waited at worst.
		if maxAge := time.Since(h.started); r["age_estimated"] != true || age < 2*time.Second-10*time.Millisecond || age > maxAge {
			t.Errorf("age %v estimated %v, want >= 2s and <= %s: %v", age, r["age_estimated"], maxAge, r)
		}
		// An upper bound too: the last data moved before the transition.
		if maxAge := num(r, "age_max_us"); maxAge < num(r, "age_us") || time.Duration(maxAge)*time.Microsecond > time.Since(h.started) {
			t.Errorf("age_max_us %d, want between age_us and the helper's age: %v", maxAge, r)
		}
		if r["why"] == "" || r["timer"] != "keepalive" { // Go turns keepalive on
			t.Errorf("why %v timer %v", r["why"], r["timer"])
		}
		f := seen[r["laddr"].(string)]
		if f == nil {
			f = &found{}
			seen[r["laddr"].(string)] = f
		}
		switch r["state"] {
		case "CLOSE_WAIT":
			f.cw++
			i := slices.IndexFunc(h.Conns, func(c stuckConn) bool { return c.Client == rport })
			if lport != h.Port || i < 0 {
				t.Errorf("CLOSE_WAIT %d <- %d is not the helper's", lport, rport)
				continue
			}
			// Unread bytes plus the FIN, as ss shows it.
			if q := num(r, "recv_q"); q != unread+1 || num(r, "send_q") != 0 {
				t.Errorf("CLOSE_WAIT recv_q %d send_q %d, want %d and 0", q, num(r, "send_q"), unread+1)
			}
			key := endpoint(r["laddr"].(string), lport) + " " + endpoint(r["raddr"].(string), rport)
			if ssq != nil && ssq[key] != num(r, "recv_q") {
				t.Errorf("%s: recv_q %d, ss says %d", key, num(r, "recv_q"), ssq[key])
			}
			var want []owner
			for _, fd := range h.Conns[i].ServerFDs {
				want = append(want, owner{h.Pid, testComm(), fd})
			}
			if i == 0 && h.Child != 0 {
				want = append(want, owner{h.Child, "sleep", 3})
			}
			if got := ownersOf(r); !sameOwners(got, want) {
				t.Errorf("CLOSE_WAIT %d owners %v, want %v", rport, got, want)
			}
			if !strings.Contains(r["why"].(string), "not called close()") {
				t.Errorf("why %q", r["why"])
			}
		case "FIN_WAIT2":
			f.fw2++
			i := slices.IndexFunc(h.Conns, func(c stuckConn) bool { return c.Client == lport })
			if rport != h.Port || i < 0 {
				t.Errorf("FIN_WAIT2 %d -> %d is not the helper's", lport, rport)
				continue
			}
			if num(r, "recv_q") != 0 || num(r, "send_q") != 0 {
				t.Errorf("FIN_WAIT2 queues %v %v", r["recv_q"], r["send_q"])
			}
			if got, want := ownersOf(r), []owner{{h.Pid, testComm(), h.Conns[i].ClientFD}}; !sameOwners(got, want) {
				t.Errorf("FIN_WAIT2 owners %v, want %v", got, want)
			}
		default:
			t.Errorf("state %v listed", r["state"])
		}
	}
	for addr := range helpers {
		if f := seen[addr]; f == nil || f.cw != n || f.fw2 != n {
			t.Errorf("%s: found %+v, want %d CLOSE_WAIT and %d FIN_WAIT2", addr, f, n, n)
		}
	}

	// --for 1h: none of them.
	if out, _, code := cli(t, "stuck", "--netns", path, "--for", "1h", "--exit-code"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Errorf("--for 1h: exit %d, output:\n%s", code, out)
	}
	// --exit-code with stuck sockets: status 1, saying how many.
	if _, errOut, code := cli(t, "stuck", "--netns", path, "--for", "1s", "--exit-code", "-o", "json"); code != 1 || !strings.Contains(errOut, fmt.Sprintf("%d stuck sockets", 4*n)) {
		t.Errorf("--exit-code: exit %d, stderr %q", code, errOut)
	}
	// TIME_WAIT only when asked for, with its age from the timer.
	out, _, _ = cli(t, "stuck", "--netns", path, "--for", "1s", "--state", "time-wait", "-o", "json")
	rows = jsonLines(t, out)
	if len(rows) != 2*tw {
		t.Errorf("%d TIME_WAIT, want %d:\n%s", len(rows), 2*tw, out)
	}
	for _, r := range rows {
		age := time.Duration(num(r, "age_us")) * time.Microsecond
		if r["state"] != "TIME_WAIT" || r["timer"] != "timewait" || len(ownersOf(r)) != 0 ||
			age < 2*time.Second-10*time.Millisecond || age > time.Since(helpers["127.0.0.1"].started) {
			t.Errorf("TIME_WAIT row %v", r)
		}
	}
	// A port filter; a pid filter matching the child that shares one socket.
	h4 := helpers["127.0.0.1"]
	out, _, _ = cli(t, "stuck", "--netns", path, "--for", "1s", "--lport", strconv.Itoa(h4.Port), "-o", "json")
	if rows := jsonLines(t, out); len(rows) != n {
		t.Errorf("--lport: %d rows, want %d", len(rows), n)
	}
	out, _, _ = cli(t, "stuck", "--netns", path, "--for", "1s", "--pid", strconv.Itoa(h4.Child), "-o", "json")
	if rows := jsonLines(t, out); len(rows) != 1 || len(ownersOf(rows[0])) != 3 {
		t.Errorf("--pid of the child: %s", out)
	}
	// The table.
	out, _, _ = cli(t, "stuck", "--netns", path, "--for", "1s", "-6")
	defer func() {
		// ACKs in the state: the lower bound drops below 1 s, the upper
		// bound stays; not listed, but said on stderr.
		helpers["::1"].poke(t)
		out, errOut, code := cli(t, "stuck", "--netns", path, "--for", "1s", "-6", "--exit-code")
		want := fmt.Sprintf("tcpstate: %d more sockets (FIN_WAIT2, CLOSE_WAIT) may have been in their state for over 1s: it began between ", 2*n)
		if code != 0 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(errOut, want) {
			t.Errorf("after ACKs: exit %d, stdout:\n%s\nstderr: %s\nwant stderr %q...", code, out, errOut, want)
		}
	}()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2*n+1 || !strings.HasPrefix(lines[0], "STATE ") {
		t.Fatalf("table:\n%s", out)
	}
	h6 := helpers["::1"]
	wantOwner := fmt.Sprintf("%d/%s:%d", h6.Pid, testComm(), h6.Conns[0].ServerFDs[0])
	if !strings.Contains(out, wantOwner) || !strings.Contains(out, fmt.Sprintf("[::1]:%d", h6.Port)) || !strings.Contains(out, " >=2.") {
		t.Errorf("table lacks %s or the port or an age >=2.x:\n%s", wantOwner, out)
	}
}

func sameOwners(got, want []owner) bool {
	order := func(a, b owner) int { return cmp.Or(cmp.Compare(a.Pid, b.Pid), cmp.Compare(a.FD, b.FD)) }
	slices.SortFunc(got, order)
	slices.SortFunc(want, order)
	return slices.Equal(got, want)
}

// lineReader collects the JSON lines written to a pipe.
type lineReader struct {
	mu   sync.Mutex
	rows []map[string]any
	at   []time.Time
}

func (l *lineReader) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			m = map[string]any{"bad": sc.Text()}
		}
		l.mu.Lock()
		l.rows = append(l.rows, m)
		l.at = append(l.at, time.Now())
		l.mu.Unlock()
	}
}

// wait waits until match holds for want rows and returns them with the
// times they arrived.
func (l *lineReader) wait(t *testing.T, want int, d time.Duration, match func(map[string]any) bool) ([]map[string]any, []time.Time) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var rows []map[string]any
		var at []time.Time
		l.mu.Lock()
		for i, r := range l.rows {
			if match(r) {
				rows = append(rows, r)
				at = append(at, l.at[i])
			}
		}
		all := fmt.Sprint(l.rows)
		l.mu.Unlock()
		if len(rows) >= want || time.Now().After(deadline) {
			if len(rows) != want {
				t.Fatalf("%d matching lines, want %d; all lines: %s", len(rows), want, all)
			}
			return rows, at
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for the command's and the test's
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestStuckWatch(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t).Name
	path := "/run/netns/" + ns
	// Stuck before the watch starts: listed at once, age estimated.
	pre := startStuckHelper(t, ns, "tcp4", 1, 10, 0, false)
	time.Sleep(1500 * time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"stuck", "--watch", "--netns", path, "--for", "1s", "-o", "json"}, pw, &stderr)
		pw.Close()
	}()
	lines := &lineReader{}
	go lines.read(pr)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "Watching") {
		if time.Now().After(deadline) {
			t.Fatalf("not watching after 10s: %q", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	started := time.Now()
	isPre := func(r map[string]any) bool {
		return r["event"] == "stuck" && (num(r, "lport") == pre.Port || num(r, "rport") == pre.Port)
	}
	rows, at := lines.wait(t, 2, 2*time.Second, isPre)
	for i, r := range rows {
		if r["age_estimated"] != true || num(r, "age_us") < 1_400_000 || at[i].Sub(started) > 500*time.Millisecond {
			t.Errorf("already stuck socket: %v, after %s", r, at[i].Sub(started))
		}
	}

	// Stuck while watching: reported when it crosses 1 s, with the exact age.
	h := startStuckHelper(t, ns, "tcp6", 1, 10, 0, false)
	isNew := func(event string) func(map[string]any) bool {
		return func(r map[string]any) bool {
			return r["event"] == event && (num(r, "lport") == h.Port || num(r, "rport") == h.Port)
		}
	}
	rows, at = lines.wait(t, 2, 3*time.Second, isNew("stuck"))
	states := map[any]bool{}
	for i, r := range rows {
		states[r["state"]] = true
		age := time.Duration(num(r, "age_us")) * time.Microsecond
		if r["age_estimated"] != false || age < time.Second || age > 1300*time.Millisecond {
			t.Errorf("crossing: age %s (estimated %v), want exact, 1s to 1.3s: %v", age, r["age_estimated"], r)
		}
		// Made (so in the state) before h.made: never reported before
		// 1 s had passed from its transition, and soon after.
		if d := at[i].Sub(h.made); d < 700*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("reported %s after the helper's sockets were made, want about 1s", d)
		}
		if r["family"] != "ipv6" || len(ownersOf(r)) != 1 || ownersOf(r)[0].Pid != h.Pid {
			t.Errorf("crossing row %v", r)
		}
	}
	if !states["CLOSE_WAIT"] || !states["FIN_WAIT2"] {
		t.Errorf("states %v, want CLOSE_WAIT and FIN_WAIT2", states)
	}

	// Leaving: the server closes (CLOSE_WAIT -> LAST_ACK), which sends the
	// client to TIME_WAIT.
	h.closeServers(t)
	rows, _ = lines.wait(t, 2, 3*time.Second, isNew("left"))
	whys := map[any]any{}
	for _, r := range rows {
		whys[r["state"]] = r["why"]
		if num(r, "age_us") < 1_000_000 || r["age_estimated"] != false {
			t.Errorf("left row %v", r)
		}
	}
	if whys["CLOSE_WAIT"] != "left CLOSE_WAIT: now LAST_ACK" || whys["FIN_WAIT2"] != "left FIN_WAIT2: now TIME_WAIT" {
		t.Errorf("left: %v", whys)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(3 * time.Second):
		t.Fatal("still running 3s after cancel")
	}
	// Nothing else was reported: 2 + 2 stuck, 2 left.
	lines.mu.Lock()
	defer lines.mu.Unlock()
	if len(lines.rows) != 6 {
		t.Errorf("%d lines, want 6: %v", len(lines.rows), lines.rows)
	}
}
