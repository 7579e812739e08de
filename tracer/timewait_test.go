// SPDX-License-Identifier: Apache-2.0

package tracer_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/conn"
	"github.com/tcpstate/tcpstate/internal/testenv"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// clientLives returns the lives of client sockets on local port port.
func clientLives(ls []life, port int) []life {
	var out []life
	for _, l := range ls {
		if l[0].OldState == tcp.Close && l[0].NewState == tcp.SynSent && int(l[0].LPort) == port {
			out = append(out, l)
		}
	}
	return out
}

// timeWaitEnd returns the TIME_WAIT -> CLOSE event of the given 4-tuple.
func timeWaitEnd(ls []life, lport, rport int) *tracer.Event {
	for _, l := range ls {
		if ev := l[0]; ev.OldState == tcp.TimeWait && int(ev.LPort) == lport && int(ev.RPort) == rport {
			return &ev
		}
	}
	return nil
}

// A connection's TIME_WAIT ends when a new connect reuses its 4-tuple:
// FIN_WAIT2 -> TIME_WAIT when it starts, TIME_WAIT -> CLOSE at the reuse.
func TestTimeWaitEndsOnReuse(t *testing.T) {
	testenv.RequireRoot(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			ns := testenv.NewNetns(t)
			c := startTracer(t, tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}})
			h := startHelper(t, ns, "tw-reuse", network)
			first := h.next(t)
			enteredAt := time.Now()
			reused := h.next(t)
			reusedAt := time.Now()
			h.wait(t)
			if reused.Step != "reused" {
				t.Fatalf("helper said %+v", reused)
			}
			port, srv := first.Client, first.Server
			ls := waitLives(t, c, func(ls []life) bool {
				cl := clientLives(ls, port)
				return len(cl) == 2 && cl[0].closed() && cl[1].closed() && timeWaitEnd(ls, port, srv) != nil
			})
			cl := clientLives(ls, port)
			if got := cl[0].path(); got != "CLOSE>SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT" {
				t.Errorf("first connection: %s", got)
			}
			end := timeWaitEnd(ls, port, srv)
			if !end.Synthesized || end.NewState != tcp.Close || end.Skaddr != cl[0][0].Skaddr {
				t.Errorf("TIME_WAIT end: %+v", *end)
			}
			if end.Pid != uint32(first.Pid) {
				t.Errorf("TIME_WAIT end owner %d, want the connection's last owner %d", end.Pid, first.Pid)
			}
			// It lasted from entering TIME_WAIT to the reuse.
			if max := reusedAt.Sub(enteredAt) + 50*time.Millisecond; !end.InStateKnown || end.InState < 90*time.Millisecond || end.InState > max {
				t.Errorf("in TIME_WAIT %v (known %v), want between 90ms and %v", end.InState, end.InStateKnown, max)
			}
			if got := cl[1].path(); !strings.HasPrefix(got, "CLOSE>SYN_SENT>ESTABLISHED>") {
				t.Errorf("second connection on the same 4-tuple: %s", got)
			}
			if cl[1][0].Time.Before(cl[0][len(cl[0])-1].Time) {
				t.Errorf("second connection starts before the first entered TIME_WAIT")
			}
		})
	}
}

// An orphaned FIN_WAIT2 (closed by the application, the peer silent) stays
// FIN_WAIT2 for tcp_fin_timeout, not the kernel's immediate CLOSE.
func TestOrphanFinWait2Timeout(t *testing.T) {
	testenv.RequireRoot(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			ns := testenv.NewNetns(t)
			c := startTracer(t, tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}})
			h := startHelper(t, ns, "orphan-timeout", network)
			r := h.next(t)
			h.wait(t)
			ls := waitLives(t, c, func(ls []life) bool {
				return findLife(ls, clientSock, r.Client, r.Server).closed()
			})
			l := findLife(ls, clientSock, r.Client, r.Server)
			if got := l.path(); got != "CLOSE>SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>CLOSE" {
				t.Fatalf("client: %s", got)
			}
			last := l[len(l)-1]
			if !last.InStateKnown || last.InState < 800*time.Millisecond {
				t.Errorf("FIN_WAIT2 lasted %v, want about tcp_fin_timeout (1 s)", last.InState)
			}
		})
	}
}

// Both sides send FIN before seeing the other's: the client passes through
// CLOSING into TIME_WAIT.
func TestSimultaneousClose(t *testing.T) {
	testenv.RequireRoot(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			ns := testenv.NewNetns(t)
			c := startTracer(t, tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}})
			h := startHelper(t, ns, "simultaneous", network)
			r := h.next(t)
			h.wait(t)
			ls := waitLives(t, c, func(ls []life) bool {
				return findLife(ls, clientSock, r.Client, r.Server).closed() && findLife(ls, childSock, r.Client, r.Server).closed()
			})
			if got := findLife(ls, clientSock, r.Client, r.Server).path(); got != "CLOSE>SYN_SENT>ESTABLISHED>FIN_WAIT1>CLOSING>TIME_WAIT" {
				t.Errorf("client: %s", got)
			}
			if got := findLife(ls, childSock, r.Client, r.Server).path(); got != "LISTEN>SYN_RECV>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT" {
				t.Errorf("server: %s", got)
			}
		})
	}
}

// --seq: the sequence numbers line up as in a capture.
func TestSequenceNumbers(t *testing.T) {
	testenv.RequireRoot(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			ns := testenv.NewNetns(t)
			c := startTracer(t, tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}})
			r := runPair(t, ns, "client-closes", network) // the client sends "hello"
			ls := waitLives(t, c, func(ls []life) bool {
				return findLife(ls, clientSock, r.Client, r.Server).closed() && findLife(ls, childSock, r.Client, r.Server).closed()
			})
			at := func(l life, old, new tcp.State) tracer.Event {
				t.Helper()
				for _, ev := range l {
					if ev.OldState == old && ev.NewState == new {
						return ev
					}
				}
				t.Fatalf("no %s->%s in %s", old, new, l.path())
				return tracer.Event{}
			}
			cli := findLife(ls, clientSock, r.Client, r.Server)
			srv := findLife(ls, childSock, r.Client, r.Server)
			est := at(cli, tcp.SynSent, tcp.Established)
			fin := at(cli, tcp.Established, tcp.FinWait1)
			if sent := fin.SndNxt - est.SndNxt; sent != 5 {
				t.Errorf("snd_nxt advanced by %d between ESTABLISHED and FIN_WAIT1, want the 5 bytes sent", sent)
			}
			if srvEst := at(srv, tcp.SynRecv, tcp.Established); srvEst.RcvNxt != est.SndUna || srvEst.SndUna != est.RcvNxt {
				t.Errorf("handshake: server rcv_nxt %d snd_una %d, client snd_una %d rcv_nxt %d: want ISN+1 on both sides",
					srvEst.RcvNxt, srvEst.SndUna, est.SndUna, est.RcvNxt)
			}
			if cw := at(srv, tcp.Established, tcp.CloseWait); cw.RcvNxt != fin.SndNxt+1 {
				t.Errorf("server rcv_nxt at CLOSE_WAIT %d, want one past the client's data %d", cw.RcvNxt, fin.SndNxt+1)
			}
		})
	}
}

// lifeCollector keeps the connections a LifeTracker reports.
type lifeCollector struct {
	mu    sync.Mutex
	conns []conn.Connection
}

func (c *lifeCollector) Connection(conn *conn.Connection) error {
	c.mu.Lock()
	cc := *conn
	cc.Path = slices.Clone(conn.Path) // conn is reused
	c.conns = append(c.conns, cc)
	c.mu.Unlock()
	return nil
}

func (c *lifeCollector) Tick() error { return nil }

func (c *lifeCollector) find(lport, rport int) *conn.Connection {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.conns {
		if int(c.conns[i].LPort) == lport && int(c.conns[i].RPort) == rport {
			conn := c.conns[i]
			return &conn
		}
	}
	return nil
}

func TestLife(t *testing.T) {
	testenv.RequireRoot(t)
	type want struct {
		path      string
		tx, rx    uint64
		closedBy  string
		halfClose bool
		reset     tracer.Reset
	}
	cases := []struct {
		scenario       string
		client, server want
	}{
		{"client-closes",
			want{"SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT", 5, 0, "local", false, 0},
			want{"SYN_RECV>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE", 0, 5, "remote", false, 0}},
		{"server-closes",
			want{"SYN_SENT>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE", 0, 5, "remote", false, 0},
			want{"SYN_RECV>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT", 5, 0, "local", false, 0}},
		{"half-close",
			want{"SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT", 0, 9, "local", true, 0},
			want{"SYN_RECV>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE", 9, 0, "remote", true, 0}},
		{"reset",
			want{"SYN_SENT>ESTABLISHED>CLOSE", 0, 0, "", false, tracer.ResetSent},
			want{"SYN_RECV>ESTABLISHED>CLOSE", 0, 0, "", false, tracer.ResetReceived}},
	}
	for _, records := range []string{"transitions", "paths"} {
		for _, network := range []string{"tcp4", "tcp6"} {
			for _, tc := range cases {
				t.Run(records+"/"+tc.scenario+"/"+network, func(t *testing.T) {
					ns := testenv.NewNetns(t)
					// paths: the kernel sends each connection whole, at its
					// end (tcpstate life); the same connections must come out.
					tr, err := tracer.New(withTestHooks(tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}, Life: records == "paths"}))
					if err != nil {
						t.Fatal(err)
					}
					defer tr.Close()
					lc := &lifeCollector{}
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan error, 1)
					rc := &recordCounter{h: conn.NewLifeTracker(lc)}
					go func() { done <- tr.Run(ctx, rc) }()
					r := runPair(t, ns, tc.scenario, network)
					deadline := time.Now().Add(5 * time.Second)
					for time.Now().Before(deadline) && (lc.find(r.Client, r.Server) == nil || lc.find(r.Server, r.Client) == nil) {
						time.Sleep(20 * time.Millisecond)
					}
					time.Sleep(200 * time.Millisecond)
					cancel()
					if err := <-done; err != nil {
						t.Fatal(err)
					}
					check := func(who string, c *conn.Connection, w want) {
						t.Helper()
						if c == nil {
							t.Errorf("%s: no record", who)
							return
						}
						var states []string
						var sum time.Duration
						for _, st := range c.Path {
							states = append(states, st.State.String())
							sum += st.Duration
						}
						if got := strings.Join(states, ">"); got != w.path {
							t.Errorf("%s: path %s, want %s", who, got, w.path)
						}
						if c.TxBytes != w.tx || c.RxBytes != w.rx {
							t.Errorf("%s: tx %d rx %d, want %d and %d", who, c.TxBytes, c.RxBytes, w.tx, w.rx)
						}
						if c.ClosedBy != w.closedBy || c.HalfClose != w.halfClose || c.Reset != w.reset {
							t.Errorf("%s: closed_by %q half_close %v reset %q, want %q %v %q", who, c.ClosedBy, c.HalfClose, c.Reset, w.closedBy, w.halfClose, w.reset)
						}
						wantPid := uint32(r.Pid)
						if who == "server" && tc.scenario == "reset" && tr.Hooks() == tracer.HooksTracepoint && c.Pid == 0 {
							// Reset before the server closed it: never owned,
							// unless the RST came while the server's read
							// held the socket's lock.
							wantPid = 0
						}
						if c.Pid != wantPid || !c.ISNKnown || c.Partial {
							t.Errorf("%s: pid %d isn known %v partial %v", who, c.Pid, c.ISNKnown, c.Partial)
						}
						if sum != c.Duration || c.Start.Add(c.Duration) != c.Time {
							t.Errorf("%s: steps add up to %v, duration %v", who, sum, c.Duration)
						}
					}
					check("client", lc.find(r.Client, r.Server), tc.client)
					check("server", lc.find(r.Server, r.Client), tc.server)
					cli, srv := lc.find(r.Client, r.Server), lc.find(r.Server, r.Client)
					if cli != nil && srv != nil && (cli.ISN != srv.PeerISN || srv.ISN != cli.PeerISN) {
						t.Errorf("isn: client %d/%d server %d/%d", cli.ISN, cli.PeerISN, srv.ISN, srv.PeerISN)
					}
					if n := len(lc.conns); n != 2 {
						t.Errorf("%d records, want 2 (the listener is no connection)", n)
					}
					// One record per connection, none for the listener.
					if paths, transitions := rc.counts(); records == "paths" && (paths != 2 || transitions != 0) {
						t.Errorf("%d path records and %d transitions, want 2 and 0", paths, transitions)
					} else if records == "transitions" && paths != 0 {
						t.Errorf("%d path records without Options.Life", paths)
					}
				})
			}
		}
	}
}

// recordCounter passes records on to a LifeTracker, counting them.
type recordCounter struct {
	h                  *conn.LifeTracker
	mu                 sync.Mutex
	paths, transitions int
}

func (r *recordCounter) Event(ev *tracer.Event) error {
	r.mu.Lock()
	if ev.Path != nil {
		r.paths++
	} else {
		r.transitions++
	}
	r.mu.Unlock()
	return r.h.Event(ev)
}

func (r *recordCounter) Note(ev *tracer.Event) error { return r.h.Note(ev) }
func (r *recordCounter) Tick() error                 { return r.h.Tick() }

func (r *recordCounter) counts() (paths, transitions int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paths, r.transitions
}

// TestOrphanSeenAfterIdle: while no orphan is followed the polls of
// orphans back off to a second apart; the first orphan wakes them again,
// so its TIME_WAIT is seen within a poll period of the peer's FIN even
// when the FIN moves its timer within its wheel bucket (no timer event:
// only a poll can tell).
func TestOrphanSeenAfterIdle(t *testing.T) {
	testenv.RequireRoot(t)
	const finDelay = 300 * time.Millisecond
	c := startTracer(t, tracer.Options{})
	time.Sleep(2500 * time.Millisecond) // the polls back off
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	tp := tuple{tcp.IPv4, uint16(client.LocalAddr().(*net.TCPAddr).Port), uint16(ln.Addr().(*net.TCPAddr).Port)}
	idx := newTupleIndex(c, func(ev *tracer.Event) bool { return ev.LPort == tp.lport && ev.RPort == tp.rport })
	waitWheelBucketStart(t, 60*time.Second)
	client.Close() // an orphan in FIN_WAIT2 once the server acknowledges
	time.Sleep(finDelay)
	server.Close()
	var last tracer.Event
	if !pollUntil(3*time.Second, func() bool {
		idx.update()
		evs := idx.m[tp]
		if len(evs) > 0 {
			last = evs[len(evs)-1]
		}
		return last.NewState == tcp.TimeWait
	}) {
		t.Fatalf("the orphan's TIME_WAIT not seen within 3 s; events: %s", path(idx.m[tp]))
	}
	if p := path(idx.m[tp]); p != activeClosePath {
		t.Fatalf("client path %s, want %s", p, activeClosePath)
	}
	// Its FIN_WAIT2 lasted finDelay, and the poll that saw it end came at
	// most a poll period (50 ms) later; 1 s later if nothing woke the polls.
	if !last.InStateKnown || last.InState < finDelay || last.InState > finDelay+200*time.Millisecond {
		t.Errorf("FIN_WAIT2 -> TIME_WAIT after %v in FIN_WAIT2 (known %v), want %v to %v", last.InState, last.InStateKnown, finDelay, finDelay+200*time.Millisecond)
	}
}

// TestTimeWaitEndsWithItsNamespace: removing a namespace kills its
// TIME_WAITs long before their timer, with no new socket on their tuple;
// the sweep finds each within about 10 s and counts it as ended early.
func TestTimeWaitEndsWithItsNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t)
	c := startTracer(t, tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}})
	var clients []helperReport
	for _, network := range []string{"tcp4", "tcp6"} {
		clients = append(clients, runPair(t, ns, "client-closes", network))
	}
	entered := func(ls []life) bool {
		for _, r := range clients {
			if l := findLife(ls, clientSock, r.Client, r.Server); len(l) == 0 || l[len(l)-1].NewState != tcp.TimeWait {
				return false
			}
		}
		return true
	}
	waitLives(t, c, entered)
	deleted := time.Now()
	if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	// Each TIME_WAIT's end: a life of its own, TIME_WAIT -> CLOSE.
	ended := func() map[uint16]tracer.Event {
		out := map[uint16]tracer.Event{}
		for _, l := range lives(c.snapshot()) {
			if ev := l[0]; ev.OldState == tcp.TimeWait && ev.NewState == tcp.Close {
				out[ev.LPort] = ev
			}
		}
		return out
	}
	if !pollUntil(25*time.Second, func() bool { return len(ended()) == len(clients) }) {
		t.Fatalf("%d of %d TIME_WAIT ends seen 25 s after their namespace was removed", len(ended()), len(clients))
	}
	for port, ev := range ended() {
		if ev.InState > time.Since(deleted)+5*time.Second || !ev.Synthesized {
			t.Errorf("port %d: TIME_WAIT -> CLOSE after %v in TIME_WAIT (synthesized %v), want the namespace's removal, %v ago", port, ev.InState, ev.Synthesized, time.Since(deleted))
		}
	}
	shortfalls, err := c.tracer.Shortfalls()
	if err != nil {
		t.Fatal(err)
	}
	for _, sf := range shortfalls {
		want := uint64(0)
		if strings.HasPrefix(sf.What, "TIME_WAITs ended before their timer") {
			want = uint64(len(clients))
		}
		if sf.Count != want {
			t.Errorf("shortfall %d, want %d: %s", sf.Count, want, sf.What)
		}
	}
}

// TestLifePathsEqualTransitions: two tracers at once, one sending
// transitions and one each connection's path (Options.Life), make the
// same connections of an orphan that times out and of a simultaneous
// close: the orphan's path ends with a transition of its timewait socket.
func TestLifePathsEqualTransitions(t *testing.T) {
	testenv.RequireRoot(t)
	scenarios := []string{"orphan-timeout"}
	// The simultaneous close holds back a FIN with nft (make test's deps
	// install it; vmtest's machines have none).
	if _, err := exec.LookPath("nft"); err == nil {
		scenarios = append(scenarios, "simultaneous")
	} else {
		t.Log("nft not installed: no simultaneous close")
	}
	for _, scenario := range scenarios {
		for _, network := range []string{"tcp4", "tcp6"} {
			t.Run(scenario+"/"+network, func(t *testing.T) {
				ns := testenv.NewNetns(t)
				var lcs [2]*lifeCollector
				var dones [2]chan error
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				for i, life := range []bool{false, true} {
					tr, err := tracer.New(withTestHooks(tracer.Options{Filter: tcp.Filter{NetNS: ns.Inode}, Life: life}))
					if err != nil {
						t.Fatal(err)
					}
					defer tr.Close()
					lcs[i], dones[i] = &lifeCollector{}, make(chan error, 1)
					go func() { dones[i] <- tr.Run(ctx, conn.NewLifeTracker(lcs[i])) }()
				}
				r := runPair(t, ns, scenario, network)
				deadline := time.Now().Add(10 * time.Second)
				for time.Now().Before(deadline) && (lcs[1].find(r.Client, r.Server) == nil || lcs[0].find(r.Client, r.Server) == nil) {
					time.Sleep(20 * time.Millisecond)
				}
				time.Sleep(200 * time.Millisecond)
				cancel()
				for _, done := range dones {
					if err := <-done; err != nil {
						t.Fatal(err)
					}
				}
				// What the model makes of them; each tracer has its own
				// clock readings, so times are left out.
				summary := func(c *conn.Connection) string {
					if c == nil {
						return "none"
					}
					var states []string
					for _, st := range c.Path {
						states = append(states, st.State.String())
					}
					return fmt.Sprintf("%s pid %d tx %d rx %d retrans %d closed_by %q half_close %v reset %q err %d isn %d/%d/%v partial %v",
						strings.Join(states, ">"), c.Pid, c.TxBytes, c.RxBytes, c.Retrans, c.ClosedBy, c.HalfClose, c.Reset,
						c.Error, c.ISN, c.PeerISN, c.ISNKnown, c.Partial)
				}
				for _, side := range [][2]int{{r.Client, r.Server}, {r.Server, r.Client}} {
					fromEvents, fromPaths := summary(lcs[0].find(side[0], side[1])), summary(lcs[1].find(side[0], side[1]))
					if fromPaths != fromEvents {
						t.Errorf("port %d:\npaths:       %s\ntransitions: %s", side[0], fromPaths, fromEvents)
					} else {
						t.Logf("port %d: %s", side[0], fromPaths)
					}
				}
				if side := summary(lcs[1].find(r.Client, r.Server)); scenario == "orphan-timeout" && !strings.HasPrefix(side, "SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>CLOSE ") {
					t.Errorf("client: %s, want the orphan's FIN_WAIT2 then CLOSE", side)
				}
			})
		}
	}
}
