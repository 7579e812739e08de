// SPDX-License-Identifier: Apache-2.0

package tracer_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/internal/testenv"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

func TestMain(m *testing.M) {
	testenv.Main(m, map[string]func([]string) error{"workload": runHelper})
}

// collector keeps every event a tracer reads.
type collector struct {
	mu     sync.Mutex
	events []tracer.Event
	tracer *tracer.Tracer
}

func (c *collector) Event(ev *tracer.Event) error {
	c.mu.Lock()
	c.events = append(c.events, *ev)
	c.mu.Unlock()
	return nil
}

func (c *collector) Tick() error { return nil }

func (c *collector) snapshot() []tracer.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]tracer.Event(nil), c.events...)
}

// startTracer loads a tracer with opts, seeded as tcpstate seeds it, and
// collects its events until the test ends.
func startTracer(t *testing.T, opts tracer.Options) *collector {
	t.Helper()
	c := &collector{}
	c.tracer = startHandler(t, opts, c)
	return c
}

// startHandler loads a tracer with opts, seeded as tcpstate seeds it, and
// hands its events to h until the test ends.
func startHandler(t *testing.T, opts tracer.Options, h tracer.Handler) *tracer.Tracer {
	t.Helper()
	if opts.Seeds == nil {
		opts.Seeds = seedOwners
	}
	tr, err := tracer.New(withTestKernelBTF(withTestHooks(opts)))
	if err != nil {
		t.Fatalf("tracer.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

// seedOwners puts the holders of the sockets that exist now, from /proc.
func seedOwners(put func(tracer.Seed) error) error {
	return snapshot.SocketOwners(func(inode uint64, o snapshot.Owner) error {
		return put(tracer.Seed{Inode: inode, Pid: o.Pid, Comm: o.Comm})
	})
}

// helper is a workload process in the test namespace.
type helper struct {
	cmd    *exec.Cmd
	in     *os.File
	out    *bufio.Scanner
	stderr strings.Builder
}

func startHelper(t *testing.T, ns *testenv.Netns, args ...string) *helper {
	t.Helper()
	cmd := testenv.Helper(ns.Name, "workload", args...)
	h := &helper{cmd: cmd}
	cmd.Stderr = &h.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = stdinR
	h.in = stdinW
	h.out = bufio.NewScanner(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdinR.Close()
	t.Cleanup(func() {
		h.in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return h
}

// next reads the helper's next report.
func (h *helper) next(t *testing.T) helperReport {
	t.Helper()
	if !h.out.Scan() {
		h.cmd.Wait()
		t.Fatalf("helper %v ended early: %s", h.cmd.Args, h.stderr.String())
	}
	var r helperReport
	if err := json.Unmarshal(h.out.Bytes(), &r); err != nil {
		t.Fatalf("helper said %q: %v", h.out.Text(), err)
	}
	return r
}

func (h *helper) send(t *testing.T, line string) {
	t.Helper()
	if _, err := fmt.Fprintln(h.in, line); err != nil {
		t.Fatal(err)
	}
}

func (h *helper) wait(t *testing.T) {
	t.Helper()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper %v: %v: %s", h.cmd.Args, err, h.stderr.String())
	}
}

// runPair runs a one-process scenario and returns its report.
func runPair(t *testing.T, ns *testenv.Netns, scenario, network string, addr ...string) helperReport {
	t.Helper()
	h := startHelper(t, ns, append([]string{scenario, network}, addr...)...)
	r := h.next(t)
	h.wait(t)
	return r
}

// life is the events of one socket from its first transition to CLOSE.
type life []tracer.Event

func (l life) path() string {
	var b strings.Builder
	for i, ev := range l {
		if i == 0 {
			b.WriteString(ev.OldState.String())
		}
		b.WriteString(">" + ev.NewState.String())
	}
	return b.String()
}

// closed tells whether the full socket has ended: CLOSE, or TIME_WAIT.
func (l life) closed() bool {
	return len(l) > 0 && (l[len(l)-1].NewState == tcp.Close || l[len(l)-1].NewState == tcp.TimeWait)
}

// lives splits events into per-socket lives, in order. A life ends with
// its full socket (CLOSE or TIME_WAIT); the end of a TIME_WAIT is a life of
// its own, since the socket's address may be in use again by then.
func lives(events []tracer.Event) []life {
	open := map[uint64]int{}
	var out []life
	for _, ev := range events {
		if ev.OldState == tcp.TimeWait {
			out = append(out, life{ev})
			continue
		}
		i, ok := open[ev.Skaddr]
		if !ok {
			i = len(out)
			out = append(out, nil)
			open[ev.Skaddr] = i
		}
		out[i] = append(out[i], ev)
		if ev.NewState == tcp.Close || ev.NewState == tcp.TimeWait {
			delete(open, ev.Skaddr)
		}
	}
	return out
}

// socketKind picks a life out by its role in a connection.
type socketKind int

const (
	clientSock socketKind = iota
	childSock
	listenSock
)

func (k socketKind) String() string { return [...]string{"client", "server child", "listener"}[k] }

func findLife(ls []life, kind socketKind, client, server int) life {
	for _, l := range ls {
		first := l[0]
		switch {
		case kind == clientSock && first.OldState == tcp.Close && first.NewState == tcp.SynSent &&
			int(first.LPort) == client && int(first.RPort) == server:
			return l
		case kind == childSock && first.OldState == tcp.Listen && first.NewState == tcp.SynRecv &&
			int(first.LPort) == server && int(first.RPort) == client:
			return l
		case kind == listenSock && first.NewState == tcp.Listen && int(first.LPort) == server:
			return l
		}
	}
	return nil
}

// waitLives waits until the sockets of every connection have closed.
func waitLives(t *testing.T, c *collector, want func([]life) bool) []life {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ls := lives(c.snapshot())
		if want(ls) {
			time.Sleep(200 * time.Millisecond) // anything extra shows up too
			return lives(c.snapshot())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ls := lives(c.snapshot())
	for _, l := range ls {
		t.Logf("seen: %s %s:%d -> %s:%d", l.path(), l[0].LAddr, l[0].LPort, l[0].RAddr, l[0].RPort)
	}
	lost, _ := c.tracer.Lost()
	t.Fatalf("timed out waiting for transitions (%d lost)", lost)
	return nil
}

func loopback(network string) netip.Addr {
	if network == "tcp6" {
		return netip.IPv6Loopback()
	}
	return netip.MustParseAddr("127.0.0.1")
}

// checkLife asserts the exact path and 4-tuple of every event of l.
func checkLife(t *testing.T, l life, kind socketKind, wantPath string, local, remote netip.AddrPort) {
	t.Helper()
	if l == nil {
		t.Errorf("%s: no transitions seen", kind)
		return
	}
	if got := l.path(); got != wantPath {
		t.Errorf("%s: path %s, want %s", kind, got, wantPath)
	}
	for _, ev := range l {
		gotL := netip.AddrPortFrom(ev.LAddr, ev.LPort)
		gotR := netip.AddrPortFrom(ev.RAddr, ev.RPort)
		if gotL != local || gotR != remote {
			t.Errorf("%s %s->%s: tuple %s -> %s, want %s -> %s", kind, ev.OldState, ev.NewState, gotL, gotR, local, remote)
		}
		if want := family(local.Addr()); ev.Family != want {
			t.Errorf("%s %s->%s: family %s, want %s", kind, ev.OldState, ev.NewState, ev.Family, want)
		}
	}
}

func family(a netip.Addr) tcp.Family {
	if a.Is4() {
		return tcp.IPv4
	}
	return tcp.IPv6
}

func TestTransitions(t *testing.T) {
	testenv.RequireRoot(t)
	// The active closer enters TIME_WAIT; --raw shows the kernel's CLOSE.
	const (
		activeClose    = "SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT"
		activeCloseRaw = "SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>CLOSE"
		passiveClose   = "SYN_SENT>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE"
	)
	cases := []struct {
		scenario       string
		raw            bool
		kernelBTF      string // classic tracepoints, which do not follow TIME_WAIT
		client, server string // paths after the first state
	}{
		{"client-closes", false, "", activeClose, "SYN_RECV>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE"},
		{"client-closes", true, "", activeCloseRaw, "SYN_RECV>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE"},
		{"client-closes", false, "/sys/kernel/btf/vmlinux", activeCloseRaw, "SYN_RECV>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE"},
		{"server-closes", false, "", passiveClose, "SYN_RECV>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT"},
		{"half-close", false, "", activeClose, "SYN_RECV>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE"},
		{"reset", false, "", "SYN_SENT>ESTABLISHED>CLOSE", "SYN_RECV>ESTABLISHED>CLOSE"},
	}
	for _, network := range []string{"tcp4", "tcp6"} {
		for _, tc := range cases {
			name := tc.scenario + "/" + network
			if tc.raw {
				name += "/raw"
			}
			if tc.kernelBTF != "" {
				name += "/classic"
			}
			t.Run(name, func(t *testing.T) {
				ns := testenv.NewNetns(t)
				c := startTracer(t, tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}, Raw: tc.raw, KernelBTF: tc.kernelBTF})
				r := runPair(t, ns, tc.scenario, network)
				ls := waitLives(t, c, func(ls []life) bool {
					return findLife(ls, clientSock, r.Client, r.Server).closed() &&
						findLife(ls, childSock, r.Client, r.Server).closed() &&
						findLife(ls, listenSock, r.Client, r.Server).closed()
				})
				lo := loopback(network)
				cli := netip.AddrPortFrom(lo, uint16(r.Client))
				srv := netip.AddrPortFrom(lo, uint16(r.Server))
				if lost, _ := c.tracer.Lost(); lost > 0 {
					t.Logf("the tracer lost %d events", lost)
				}
				// Nothing here is beyond a limit of the tracer.
				shortfalls, err := c.tracer.Shortfalls()
				if err != nil {
					t.Fatal(err)
				}
				for _, sf := range shortfalls {
					if sf.Count != 0 {
						t.Errorf("shortfall %d %s", sf.Count, sf.What)
					}
				}
				checkLife(t, findLife(ls, clientSock, r.Client, r.Server), clientSock, "CLOSE>"+classicWant(tc.client), cli, srv)
				checkLife(t, findLife(ls, childSock, r.Client, r.Server), childSock, "LISTEN>"+classicWant(tc.server), srv, cli)
				any := netip.IPv4Unspecified()
				if network == "tcp6" {
					any = netip.IPv6Unspecified()
				}
				checkLife(t, findLife(ls, listenSock, r.Client, r.Server), listenSock, "CLOSE>LISTEN>CLOSE", srv, netip.AddrPortFrom(any, 0))
				if len(ls) != 3 {
					t.Errorf("saw %d sockets, want 3 (client, child, listener)", len(ls))
				}
				for _, l := range ls {
					for _, ev := range l[1:] {
						if !ev.InStateKnown {
							t.Errorf("%s->%s: in-state time unknown", ev.OldState, ev.NewState)
						}
						if want := ev.NewState == tcp.TimeWait; ev.Synthesized != want {
							t.Errorf("%s->%s: synthesized %v, want %v", ev.OldState, ev.NewState, ev.Synthesized, want)
						}
					}
				}
			})
		}
		t.Run("refused/"+network, func(t *testing.T) {
			ns := testenv.NewNetns(t)
			c := startTracer(t, tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}})
			r := runPair(t, ns, "refused", network)
			ls := waitLives(t, c, func(ls []life) bool {
				for _, l := range ls {
					if l[0].NewState == tcp.SynSent && l.closed() {
						return true
					}
				}
				return false
			})
			var got life
			for _, l := range ls {
				if l[0].NewState == tcp.SynSent {
					got = l
				}
			}
			if got.path() != "CLOSE>SYN_SENT>CLOSE" {
				t.Fatalf("refused connect: path %s, want CLOSE>SYN_SENT>CLOSE", got.path())
			}
			for _, ev := range got {
				if ev.LPort == 0 {
					t.Errorf("%s->%s: local port 0, want the bound port", ev.OldState, ev.NewState)
				}
				if int(ev.RPort) != r.Server {
					t.Errorf("%s->%s: remote port %d, want %d", ev.OldState, ev.NewState, ev.RPort, r.Server)
				}
			}
		})
	}
}

// ownerRun runs server and client in separate processes; the client
// closes only after the server has accepted.
type ownerRun struct {
	serverPid, clientPid int
	server, client       int
	events               []life
}

func runOwners(t *testing.T, ns *testenv.Netns, c *collector, network, addr string, beforeClient func(pid int)) ownerRun {
	t.Helper()
	srv := startHelper(t, ns, "server", network, addr)
	sr := srv.next(t)
	cli := startHelper(t, ns, "client", network, addr, strconv.Itoa(sr.Server))
	if beforeClient != nil {
		beforeClient(cli.cmd.Process.Pid)
	}
	cli.send(t, "go")
	cr := cli.next(t)
	if step := srv.next(t); step.Step != "accepted" {
		t.Fatalf("server said %+v, want accepted", step)
	}
	cli.send(t, "close")
	cli.wait(t)
	srv.wait(t)
	ls := waitLives(t, c, func(ls []life) bool {
		return findLife(ls, clientSock, cr.Client, sr.Server).closed() &&
			findLife(ls, childSock, cr.Client, sr.Server).closed() &&
			findLife(ls, listenSock, cr.Client, sr.Server).closed()
	})
	return ownerRun{serverPid: sr.Pid, clientPid: cr.Pid, server: sr.Server, client: cr.Client, events: ls}
}

func TestOwnerAcrossProcesses(t *testing.T) {
	testenv.RequireRoot(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			ns := testenv.NewNetns(t)
			c := startTracer(t, tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}})
			r := runOwners(t, ns, c, network, "", nil)
			comm := filepath.Base(os.Args[0])
			if len(comm) > 15 {
				comm = comm[:15]
			}
			check := func(kind socketKind, l life, wantPids ...int) {
				t.Helper()
				if len(l) != len(wantPids) {
					t.Errorf("%s: path %s, want %d transitions", kind, l.path(), len(wantPids))
					return
				}
				for i, ev := range l {
					if wantPids[i] < 0 { // either: 0 or that pid
						wantPids[i] = -wantPids[i]
						if ev.Pid == 0 {
							wantPids[i] = 0
						}
					}
					wantComm := comm
					if wantPids[i] == 0 {
						wantComm = ""
					}
					if int(ev.Pid) != wantPids[i] || ev.Comm != wantComm {
						t.Errorf("%s %s->%s: owner %d %q, want %d %q", kind, ev.OldState, ev.NewState, ev.Pid, ev.Comm, wantPids[i], wantComm)
					}
				}
			}
			cp, sp := r.clientPid, r.serverPid
			// Every transition of the client carries the client's pid, also
			// FIN_WAIT1->FIN_WAIT2, which runs in the server's task.
			check(clientSock, findLife(r.events, clientSock, r.client, r.server), cp, cp, cp, cp, cp)
			if c.tracer.Hooks() == tracer.HooksFentry {
				// The child has no owner until accept(); then the server,
				// also for ESTABLISHED->CLOSE_WAIT, which runs in the
				// client's task.
				check(childSock, findLife(r.events, childSock, r.client, r.server), 0, 0, sp, sp, sp)
			} else {
				// Tracepoints only: the server owns it from its close() on,
				// or from the client's FIN if that came while the server
				// held the socket's lock (it is then read in its task).
				check(childSock, findLife(r.events, childSock, r.client, r.server), 0, 0, -sp, sp, sp)
			}
			check(listenSock, findLife(r.events, listenSock, r.client, r.server), sp, sp)
		})
	}
}

// newCgroup makes a cgroup v2 for the test and returns its path and id.
func newCgroup(t *testing.T) (string, uint64) {
	t.Helper()
	cg := filepath.Join(cgroup2Root(t), fmt.Sprintf("tcpstate-test-%d", rand.Uint32()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	var st unix.Stat_t
	if err := unix.Stat(cg, &st); err != nil {
		t.Fatal(err)
	}
	return cg, st.Ino
}

// moveTo moves the process pid into the cgroup v2 at path.
func moveTo(t *testing.T, path string, pid int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(path, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cgroup2Root finds where the cgroup v2 hierarchy is mounted.
func cgroup2Root(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.Index(line, " - cgroup2 "); i >= 0 {
			return strings.Fields(line)[4]
		}
	}
	t.Fatal("no cgroup2 mount")
	return ""
}

// TestFilters runs one workload under an unfiltered tracer and one tracer
// per filter; each filtered tracer must see exactly the matching subset.
func TestFilters(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t)
	cg, cgID := newCgroup(t)

	all := startTracer(t, tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}})
	type filterCase struct {
		name  string
		opts  tracer.Options
		match func(ev tracer.Event) bool
		c     *collector
		since time.Time // events before the tracer started are not expected
	}
	// Filled in once the workload's ports and pids are known.
	var r4, r6 ownerRun
	var pair2 helperReport
	cases := []*filterCase{
		{name: "ipv4", opts: tracer.Options{Filter: tcp.Filter{IPv4: true}}, match: func(ev tracer.Event) bool { return ev.Family == tcp.IPv4 }},
		{name: "ipv6", opts: tracer.Options{Filter: tcp.Filter{IPv6: true}}, match: func(ev tracer.Event) bool { return ev.Family == tcp.IPv6 }},
		{name: "state", opts: tracer.Options{Filter: tcp.Filter{States: []tcp.State{tcp.CloseWait}}}, match: func(ev tracer.Event) bool {
			return ev.OldState == tcp.CloseWait || ev.NewState == tcp.CloseWait
		}},
		{name: "raddr", opts: tracer.Options{Filter: tcp.Filter{RAddrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}}, match: func(ev tracer.Event) bool {
			return ev.RAddr == netip.MustParseAddr("127.0.0.2")
		}},
		{name: "laddr-v6", opts: tracer.Options{Filter: tcp.Filter{LAddrs: []netip.Prefix{netip.MustParsePrefix("::1/128")}}}, match: func(ev tracer.Event) bool {
			return ev.LAddr == netip.IPv6Loopback()
		}},
		{name: "cgroup", opts: tracer.Options{Filter: tcp.Filter{CgroupID: cgID}}, match: func(ev tracer.Event) bool { return ev.CgroupID == cgID }},
		{name: "comm", opts: tracer.Options{Filter: tcp.Filter{Comms: []string{"no-such-comm", commOf(os.Args[0])}}}, match: func(ev tracer.Event) bool {
			return ev.Comm == commOf(os.Args[0])
		}},
	}
	// Port and pid filters need values known only after the servers start,
	// so they get their own tracers below.
	for _, fc := range cases {
		fc.opts.NetNS = ns.Inode
		fc.c = startTracer(t, fc.opts)
	}
	moveToCgroup := func(pid int) { moveTo(t, cg, pid) }
	r4 = runOwners(t, ns, all, "tcp4", "", moveToCgroup)
	r6 = runOwners(t, ns, all, "tcp6", "", nil)
	pair2 = runPair(t, ns, "client-closes", "tcp4", "127.0.0.2")
	waitLives(t, all, func(ls []life) bool { return findLife(ls, listenSock, pair2.Client, pair2.Server).closed() })

	// Second round, for the filters that need the first round's values:
	// same workload shape, new ports and pids.
	lateAll := startTracer(t, tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}})
	late := []*filterCase{}
	srvProbe := startHelper(t, ns, "server", "tcp4", "")
	sr := srvProbe.next(t)
	late = append(late,
		&filterCase{name: "lport", opts: tracer.Options{Filter: tcp.Filter{LPorts: []uint16{uint16(sr.Server)}}}, match: func(ev tracer.Event) bool { return int(ev.LPort) == sr.Server }},
		&filterCase{name: "rport", opts: tracer.Options{Filter: tcp.Filter{RPorts: []uint16{1, uint16(sr.Server)}}}, match: func(ev tracer.Event) bool { return int(ev.RPort) == sr.Server }},
		&filterCase{name: "pid", opts: tracer.Options{Filter: tcp.Filter{PIDs: []uint32{uint32(sr.Pid)}}}, match: func(ev tracer.Event) bool { return int(ev.Pid) == sr.Pid }},
	)
	for _, fc := range late {
		fc.opts.NetNS = ns.Inode
		fc.c = startTracer(t, fc.opts)
		fc.since = time.Now()
	}
	cli := startHelper(t, ns, "client", "tcp4", "", strconv.Itoa(sr.Server))
	cli.send(t, "go")
	cr := cli.next(t)
	if step := srvProbe.next(t); step.Step != "accepted" {
		t.Fatalf("server said %+v", step)
	}
	cli.send(t, "close")
	cli.wait(t)
	srvProbe.wait(t)
	// Noise the port and pid filters must leave out.
	runPair(t, ns, "client-closes", "tcp4")
	waitLives(t, lateAll, func(ls []life) bool {
		return findLife(ls, clientSock, cr.Client, sr.Server).closed() &&
			findLife(ls, listenSock, cr.Client, sr.Server).closed() && len(ls) >= 6
	})

	check := func(fc *filterCase, reference *collector) {
		t.Helper()
		time.Sleep(100 * time.Millisecond)
		var want []string
		total := 0
		for _, ev := range reference.snapshot() {
			total++
			if fc.match(ev) && ev.Time.After(fc.since) {
				want = append(want, key(ev))
			}
		}
		var got []string
		for _, ev := range fc.c.snapshot() {
			got = append(got, key(ev))
		}
		if len(want) == 0 || len(want) == total {
			t.Errorf("filter %s: workload gives %d of %d events; the test cannot tell", fc.name, len(want), total)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("filter %s: got %d events, want %d:\ngot:\n%s\nwant:\n%s\nfiltered tracer counted: %s\nreference tracer counted: %s",
				fc.name, len(got), len(want), strings.Join(got, "\n"), strings.Join(want, "\n"), counted(fc.c.tracer), counted(reference.tracer))
		}
	}
	for _, fc := range cases {
		check(fc, all)
	}
	for _, fc := range late {
		check(fc, lateAll)
	}
	_ = r4
	_ = r6
}

// counted says what a tracer counted as not seen or not followed, so that
// a failed comparison tells a kernel's gap from a bug.
func counted(tr *tracer.Tracer) string {
	var out []string
	if lost, err := tr.Lost(); err != nil || lost > 0 {
		out = append(out, fmt.Sprintf("lost %d (%v)", lost, err))
	}
	sf, err := tr.Shortfalls()
	if err != nil {
		return err.Error()
	}
	for _, s := range sf {
		if s.Count > 0 {
			out = append(out, fmt.Sprintf("%d %s", s.Count, s.What))
		}
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, "; ")
}

func commOf(path string) string {
	c := filepath.Base(path)
	if len(c) > 15 {
		c = c[:15]
	}
	return c
}

func key(ev tracer.Event) string {
	return fmt.Sprintf("%x %s:%d>%s:%d %s>%s pid=%d", ev.Skaddr, ev.LAddr, ev.LPort, ev.RAddr, ev.RPort, ev.OldState, ev.NewState, ev.Pid)
}

// On a kernel with BTF (this one, and the vmtest kernels) the cheaper
// tp_btf programs load and TIME_WAIT is followed: no notice.
func TestLoadsEverything(t *testing.T) {
	testenv.RequireRoot(t)
	tr, err := tracer.New(withTestHooks(tracer.Options{Filter: tcp.Filter{}}))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for _, n := range tr.Notices() {
		// Kernels before 6.10 give no RST reason: said, not a failure.
		if !strings.HasPrefix(n, "this kernel gives no reason for the RSTs it sends") {
			t.Errorf("notice: %q", n)
		}
	}
}
