// SPDX-License-Identifier: Apache-2.0

package ladder_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/internal/testenv"
	"github.com/tcpstate/tcpstate/ladder"
	"github.com/tcpstate/tcpstate/output"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

var record = flag.Bool("record", false, "write the live tests' events to testdata/*.jsonl (the golden tests' input)")

func TestMain(m *testing.M) {
	testenv.Main(m, map[string]func([]string) error{"scenario": runScenario})
}

// collector keeps the tracer's events and notes, in order.
type collector struct {
	mu    sync.Mutex
	items []tracer.Event // notes have Note set
}

func (c *collector) Event(ev *tracer.Event) error {
	c.mu.Lock()
	c.items = append(c.items, *ev)
	c.mu.Unlock()
	return nil
}

func (c *collector) Note(ev *tracer.Event) error { return c.Event(ev) }

func (c *collector) Tick() error { return nil }

// snapshot returns the events and notes so far.
func (c *collector) snapshot() []tracer.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]tracer.Event(nil), c.items...)
}

// events leaves the notes out: what 'tcpstate --seq -o json' prints.
func events(items []tracer.Event) []tracer.Event {
	var out []tracer.Event
	for _, ev := range items {
		if ev.Note == tracer.NoteNone {
			out = append(out, ev)
		}
	}
	return out
}

// packet is a line of tcpdump -S -n.
type packet struct {
	src, dst       int // ports
	flags          string
	seq, ack       uint32
	hasSeq, hasAck bool
}

func (p packet) String() string {
	return fmt.Sprintf("%d > %d [%s] seq %d ack %d", p.src, p.dst, p.flags, p.seq, p.ack)
}

var packetRe = regexp.MustCompile(`IP6? \S+\.(\d+) > \S+\.(\d+): Flags \[([^\]]*)\](?:, seq (\d+)(?::\d+)?)?(?:, ack (\d+))?`)

// capture runs tcpdump -S on an interface of a namespace until stopped.
type capture struct {
	cmd  *exec.Cmd
	out  strings.Builder
	done chan struct{}
}

func startCapture(t *testing.T, ns *testenv.Netns, iface string) *capture {
	t.Helper()
	c := &capture{done: make(chan struct{})}
	c.cmd = exec.Command("ip", "netns", "exec", ns.Name, "tcpdump", "-i", iface, "-n", "-S", "-l", "tcp")
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v (make test installs it)", err)
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.out.WriteString(sc.Text() + "\n")
		}
	}()
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "listening on") {
				ready <- nil
				break
			}
		}
		ready <- fmt.Errorf("tcpdump did not start")
		for sc.Scan() {
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not start in 10 s")
	}
	return c
}

func (c *capture) stop(t *testing.T) []packet {
	t.Helper()
	time.Sleep(100 * time.Millisecond)
	c.cmd.Process.Signal(syscall.SIGINT)
	<-c.done
	c.cmd.Wait()
	var out []packet
	for _, line := range strings.Split(c.out.String(), "\n") {
		m := packetRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		p := packet{flags: m[3]}
		p.src, _ = strconv.Atoi(m[1])
		p.dst, _ = strconv.Atoi(m[2])
		if m[4] != "" {
			n, _ := strconv.ParseUint(m[4], 10, 32)
			p.seq, p.hasSeq = uint32(n), true
		}
		if m[5] != "" {
			n, _ := strconv.ParseUint(m[5], 10, 32)
			p.ack, p.hasAck = uint32(n), true
		}
		out = append(out, p)
	}
	return out
}

// diagrams collects what a Tracker draws.
type diagrams struct{ ds []ladder.Diagram }

func (d *diagrams) Diagram(x *ladder.Diagram) error                  { d.ds = append(d.ds, *x); return nil }
func (d *diagrams) Follow(*ladder.Diagram, []ladder.Row, bool) error { return nil }
func (d *diagrams) find(port int) *ladder.Diagram                    { return findDiagram(d.ds, port) }
func findDiagram(ds []ladder.Diagram, port int) *ladder.Diagram {
	for i := range ds {
		for _, e := range ds[i].Ends {
			if int(e.Addr.Port()) == port {
				return &ds[i]
			}
		}
	}
	return nil
}

// draw runs events and notes through a Tracker and returns what it drew.
func draw(t *testing.T, evs []tracer.Event) []ladder.Diagram {
	t.Helper()
	var out diagrams
	tr := ladder.NewTracker(&out, ladder.Options{})
	for i := range evs {
		var err error
		if evs[i].Note != tracer.NoteNone {
			err = tr.Note(&evs[i])
		} else {
			err = tr.Event(&evs[i])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tr.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.ds
}

// scenarios are the paths of the reference article, with the rows their
// diagram must have when both ends are seen: "FROM SEGMENT LEFT/RIGHT"
// (states entered, - for none), "FROM n bytes", or "SIDE: LEFT/RIGHT" for
// a transition that sends nothing.
var scenarios = []struct {
	name string
	rows []string
}{
	{"client-closes", []string{
		"L SYN SYN_SENT/SYN_RECV", "R SYN+ACK ESTABLISHED/-", "L ACK -/ESTABLISHED",
		"L 5 bytes", "L FIN FIN_WAIT1/CLOSE_WAIT", "R ACK FIN_WAIT2/-", "R FIN TIME_WAIT/LAST_ACK", "L ACK -/CLOSE"}},
	{"server-closes", []string{
		"L SYN SYN_SENT/SYN_RECV", "R SYN+ACK ESTABLISHED/-", "L ACK -/ESTABLISHED",
		"R 5 bytes", "R FIN CLOSE_WAIT/FIN_WAIT1", "L ACK -/FIN_WAIT2", "L FIN LAST_ACK/TIME_WAIT", "R ACK CLOSE/-"}},
	{"half-close", []string{
		"L SYN SYN_SENT/SYN_RECV", "R SYN+ACK ESTABLISHED/-", "L ACK -/ESTABLISHED",
		"L FIN FIN_WAIT1/CLOSE_WAIT", "R ACK FIN_WAIT2/-", "R 9 bytes", "R FIN TIME_WAIT/LAST_ACK", "L ACK -/CLOSE"}},
	{"simultaneous", []string{
		"L SYN SYN_SENT/SYN_RECV", "R SYN+ACK ESTABLISHED/-", "L ACK -/ESTABLISHED",
		"L FIN FIN_WAIT1/-", "R FIN CLOSING/FIN_WAIT1", "L ACK -/FIN_WAIT2", "L FIN -/TIME_WAIT", "R ACK TIME_WAIT/-"}},
	{"reset", []string{
		"L SYN SYN_SENT/SYN_RECV", "R SYN+ACK ESTABLISHED/-", "L ACK -/ESTABLISHED",
		"L RST CLOSE/CLOSE"}},
	{"refused", []string{"L SYN SYN_SENT/-", "R RST CLOSE/-"}},
	{"syn-timeout", []string{"L SYN SYN_SENT/-", "L: CLOSE/-"}},
}

func rowString(r *ladder.Row) string {
	state := func(c ladder.Change) string {
		if c.State == 0 {
			return "-"
		}
		return c.State.String()
	}
	from := "L"
	if r.From == ladder.Right {
		from = "R"
	}
	switch r.Kind {
	case ladder.Data:
		return fmt.Sprintf("%s %d bytes", from, r.Bytes)
	case ladder.Local:
		return fmt.Sprintf("%s: %s/%s", from, state(r.Enter[0]), state(r.Enter[1]))
	}
	return fmt.Sprintf("%s %s %s/%s", from, r.Seg, state(r.Enter[0]), state(r.Enter[1]))
}

func rowStrings(d *ladder.Diagram) []string {
	var out []string
	for i := range d.Rows {
		out = append(out, rowString(&d.Rows[i]))
	}
	return out
}

// TestLive runs every path of the article in a fresh namespace, IPv4 and
// IPv6, under the tracer and tcpdump -S at once; it checks the exact rows
// of the diagram and that every SYN, FIN and RST drawn has the seq and ack
// of the packet tcpdump captured (ACKs: the ack).
func TestLive(t *testing.T) {
	testenv.RequireRoot(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		for _, sc := range scenarios {
			t.Run(sc.name+"/"+network, func(t *testing.T) {
				ns := testenv.NewNetns(t)
				cap := startCapture(t, ns, "lo")
				tr, err := tracer.New(tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}})
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Close()
				col := &collector{}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- tr.Run(ctx, col) }()
				cmd := testenv.Helper(ns.Name, "scenario", sc.name, network)
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("scenario: %v: %s", err, stderrOf(err))
				}
				var p ports
				if _, err := fmt.Sscanf(string(out), `{"client":%d,"server":%d}`, &p.Client, &p.Server); err != nil {
					t.Fatalf("scenario said %q: %v", out, err)
				}
				waitSettled(col, p)
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				packets := cap.stop(t)
				evs := col.snapshot()
				if *record {
					writeRecording(t, sc.name+"-"+network, events(evs))
				}
				port := p.Client
				if port == 0 {
					port = p.Server
				}
				d := findDiagram(draw(t, evs), port)
				if d == nil {
					lost, _ := tr.Lost()
					for _, ev := range events(evs) {
						t.Logf("event %+v", ev)
					}
					t.Fatalf("no diagram for port %d among %d events (%d lost)", port, len(evs), lost)
				}
				if got := rowStrings(d); strings.Join(got, "\n") != strings.Join(sc.rows, "\n") {
					t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(sc.rows, "\n"))
				}
				// The simultaneous close drops the client's first FIN.
				checkPackets(t, d, packets, sc.name == "simultaneous")
				if sc.name == "syn-timeout" {
					// As many retransmissions drawn as tcpdump saw.
					syns := 0
					for _, p := range packets {
						if p.flags == "S" {
							syns++
						}
					}
					if want := fmt.Sprintf("SYN retransmitted %d times", syns-1); d.Rows[0].Note != want {
						t.Errorf("SYN note %q, want %q", d.Rows[0].Note, want)
					}
				}
				if t.Failed() {
					t.Logf("diagram:\n%s", ladder.Render{}.Text(d))
					for _, p := range packets {
						t.Logf("captured %s", p)
					}
				}
			})
		}
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// waitSettled waits until every socket on the scenario's ports has closed
// or entered TIME_WAIT, and a little more.
func waitSettled(c *collector, p ports) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		last := map[uint64]tcp.State{}
		for _, ev := range events(c.snapshot()) {
			if int(ev.LPort) == p.Client || int(ev.RPort) == p.Client || p.Client == 0 && int(ev.RPort) == p.Server {
				last[ev.ConnID()] = ev.NewState
			}
		}
		settled := len(last) > 0
		for _, s := range last {
			settled = settled && (s == tcp.Close || s == tcp.TimeWait)
		}
		if settled {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
}

// checkPackets compares every arrow with the capture: a SYN, SYN+ACK, FIN
// or RST must be a packet from the same port with that flag and the same
// seq and ack; an ACK a packet from the same port acknowledging the same
// number. Every SYN and FIN captured must be drawn. With dropped, the
// client's first FIN never reached the wire.
func checkPackets(t *testing.T, d *ladder.Diagram, packets []packet, dropped bool) {
	t.Helper()
	lostFIN := false
	port := func(s ladder.Side) int { return int(d.Ends[s].Addr.Port()) }
	drawn := map[string]bool{}
	for i := range d.Rows {
		r := &d.Rows[i]
		if r.Kind != ladder.Arrow {
			continue
		}
		src, dst := port(r.From), port(1-r.From)
		found := false
		for _, p := range packets {
			if p.src != src || p.dst != dst {
				continue
			}
			switch r.Seg {
			case ladder.ACK:
				found = p.hasAck && p.ack == r.Ack && (!p.hasSeq || p.seq == r.Seq)
			default:
				found = hasFlag(p, r.Seg) && p.seq == r.Seq && p.hasAck == r.HasAck && (!r.HasAck || p.ack == r.Ack)
			}
			if found {
				drawn[p.String()] = true
				break
			}
		}
		if !found && dropped && r.Seg == ladder.FIN && r.From == ladder.Left && !lostFIN {
			lostFIN = true // nft dropped it before tcpdump could see it
			continue
		}
		if !found {
			t.Errorf("drawn %s %d > %d seq %d ack %d (has ack %v): no such packet captured", r.Seg, src, dst, r.Seq, r.Ack, r.HasAck)
		}
	}
	for _, p := range packets {
		if (strings.Contains(p.flags, "S") || strings.Contains(p.flags, "F")) && !drawn[p.String()] &&
			(p.src == port(ladder.Left) || p.src == port(ladder.Right)) && !retransmitted(p, drawn) {
			t.Errorf("captured %s: not drawn", p)
		}
	}
}

// retransmitted tells whether p repeats a packet already drawn.
func retransmitted(p packet, drawn map[string]bool) bool { return drawn[p.String()] }

func hasFlag(p packet, s ladder.Segment) bool {
	switch s {
	case ladder.SYN:
		return p.flags == "S"
	case ladder.SYNACK:
		return p.flags == "S."
	case ladder.FIN:
		return strings.Contains(p.flags, "F")
	case ladder.RST:
		return strings.Contains(p.flags, "R")
	}
	return false
}

// writeRecording writes evs as 'tcpstate --seq -o json' prints them.
func writeRecording(t *testing.T, name string, evs []tracer.Event) {
	t.Helper()
	f, err := os.Create(filepath.Join("testdata", name+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	format, err := output.NewWith("json", output.Options{Seq: true})
	if err != nil {
		t.Fatal(err)
	}
	p := output.NewPrinter(f, format)
	for i := range evs {
		if err := p.Print(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
}

// veth joins two fresh namespaces with a veth pair: a at .1/fd00::1, b at
// .2/fd00::2.
func veth(t *testing.T, a, b *testenv.Netns) (bName string) {
	t.Helper()
	n := fmt.Sprintf("tsl%d", time.Now().UnixNano()%1e8)
	for _, args := range [][]string{
		{"link", "add", n + "a", "type", "veth", "peer", "name", n + "b"},
		{"link", "set", n + "a", "netns", a.Name},
		{"link", "set", n + "b", "netns", b.Name},
		{"-n", a.Name, "addr", "add", "10.201.0.1/24", "dev", n + "a"},
		{"-n", b.Name, "addr", "add", "10.201.0.2/24", "dev", n + "b"},
		{"-n", a.Name, "-6", "addr", "add", "fd00:201::1/64", "dev", n + "a", "nodad"},
		{"-n", b.Name, "-6", "addr", "add", "fd00:201::2/64", "dev", n + "b", "nodad"},
		{"-n", a.Name, "link", "set", n + "a", "up"},
		{"-n", b.Name, "link", "set", n + "b", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return n + "b"
}

// TestLiveTwoNamespaces: client and server in two namespaces joined by a
// veth pair are both on this host: one diagram, both sides real, matched
// by 4-tuple across the namespaces, agreeing with tcpdump.
func TestLiveTwoNamespaces(t *testing.T) {
	testenv.RequireRoot(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			a, b := testenv.NewNetns(t), testenv.NewNetns(t)
			cap := startCapture(t, b, veth(t, a, b))
			srvAddr := "10.201.0.2"
			if network == "tcp6" {
				srvAddr = "fd00:201::2"
			}
			tr, err := tracer.New(tracer.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			col := &collector{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- tr.Run(ctx, col) }()
			srv := testenv.Helper(b.Name, "scenario", "ns-server", network, srvAddr)
			srvOut, err := srv.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
			var sp ports
			if _, err := fmt.Fscanf(bufio.NewReader(srvOut), "{\"client\":0,\"server\":%d}\n", &sp.Server); err != nil {
				t.Fatalf("server: %v", err)
			}
			out, err := testenv.Helper(a.Name, "scenario", "ns-client", network, srvAddr, strconv.Itoa(sp.Server)).Output()
			if err != nil {
				t.Fatalf("client: %v: %s", err, stderrOf(err))
			}
			var cp ports
			if _, err := fmt.Sscanf(string(out), "{\"client\":%d,\"server\":0}", &cp.Client); err != nil {
				t.Fatalf("client said %q: %v", out, err)
			}
			if err := srv.Wait(); err != nil {
				t.Fatalf("server: %v", err)
			}
			waitSettled(col, ports{Client: cp.Client, Server: sp.Server})
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			packets := cap.stop(t)
			var evs []tracer.Event
			for _, ev := range col.snapshot() {
				if ev.NetNS == a.Inode || ev.NetNS == b.Inode {
					evs = append(evs, ev)
				}
			}
			d := findDiagram(draw(t, evs), cp.Client)
			if d == nil {
				t.Fatalf("no diagram for port %d", cp.Client)
			}
			if d.Ends[0].Inferred || d.Ends[1].Inferred || d.Ends[0].NetNS != a.Inode || d.Ends[1].NetNS != b.Inode {
				t.Errorf("ends %+v, want both real, in namespaces %d and %d", d.Ends, a.Inode, b.Inode)
			}
			want := scenarios[0].rows // client-closes
			if got := rowStrings(d); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("rows:\n%s\nwant:\n%s\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), ladder.Render{}.Text(d))
			}
			checkPackets(t, d, packets, false)
		})
	}
}
