// SPDX-License-Identifier: Apache-2.0

package output

import (
	"golang.org/x/sys/unix"

	"bytes"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/conn"
	"github.com/tcpstate/tcpstate/internal/testenv"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// These tests pin every record tcpstate prints, byte for byte, in
// testdata/*.golden: the events with --seq and synthesized transitions,
// the connections of 'life', the rows of 'ls' in every grouping and those
// of 'stuck' with and without --watch.

// checkGolden compares got with testdata/name.golden (rewritten with
// -update).
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	testenv.CheckGolden(t, filepath.Join("testdata", name+".golden"), got, *update)
}

// seqEvents are testEvents with sequence numbers, and synthesized
// transitions.
func seqEvents() []tracer.Event {
	evs := append([]tracer.Event(nil), testEvents...)
	for i := range evs {
		evs[i].SndUna = uint32(i) * 1000003
		evs[i].SndNxt = evs[i].SndUna + uint32(i)*7
		evs[i].RcvNxt = ^uint32(0) - uint32(i)
		evs[i].Cookie = uint64(i) << 33
		evs[i].Retrans = uint32(i % 3)
		evs[i].Reset = tracer.Reset(i % 4)
		if i%2 == 1 {
			evs[i].ResetReason = tracer.ReasonAbortOnClose
		}
		if i%3 == 2 {
			evs[i].Error = tracer.Errno(unix.ETIMEDOUT)
		}
	}
	tw := testEvents[0]
	tw.OldState, tw.NewState, tw.Synthesized = tcp.FinWait2, tcp.TimeWait, true
	tw.Time = tw.Time.Add(95 * time.Millisecond)
	end := tw
	end.OldState, end.NewState = tcp.TimeWait, tcp.Close
	end.Time, end.InState = end.Time.Add(time.Minute), time.Minute+672651*time.Microsecond
	return append(evs, tw, end)
}

func TestGoldenSeq(t *testing.T) {
	evs := seqEvents()
	for _, name := range []string{"table", "json"} {
		t.Run(name, func(t *testing.T) {
			f, err := NewWith(name, Options{Seq: true, Pods: pods})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			p := NewPrinter(&buf, f)
			for i := range evs {
				if err := p.Print(&evs[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, name+"-seq", buf.Bytes())
		})
	}
}

// testConns covers the cases of the life formats.
func testConns() []conn.Connection {
	c := []conn.Connection{testConn}

	partial := testConn // no FIN, reset or ISN known; older than tcpstate
	partial.Time = partial.Time.Add(2 * time.Millisecond)
	partial.ClosedBy, partial.Reset, partial.ISNKnown, partial.Partial = "", 0, false, true
	partial.Path = []conn.Step{{State: tcp.Established, Duration: 3 * time.Second}, {State: tcp.Close}}
	c = append(c, partial)

	v6 := testConn // IPv6, another zone, received reset, half close
	v6.Time = time.Date(2026, 11, 26, 3, 4, 5, 6000, india)
	v6.Start = v6.Time.Add(-90 * time.Minute)
	v6.Duration = 90 * time.Minute
	v6.Family, v6.LAddr, v6.RAddr = tcp.IPv6, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fe80::2%eth0")
	v6.Reset, v6.ClosedBy, v6.HalfClose, v6.Retrans = tracer.ResetReceived, "remote", true, 17
	v6.Error = tracer.Errno(unix.ECONNRESET)
	v6.TxBytes, v6.RxBytes = ^uint64(0), 1<<40
	c = append(c, v6)

	nobody := testConn // no owner, hostile comm, simultaneous close, empty path
	nobody.Time = nobody.Time.Add(time.Second)
	nobody.Pid, nobody.Comm = 0, ""
	nobody.ClosedBy, nobody.Reset = "simultaneous", 0
	nobody.Path = nil
	nobody.NetNS, nobody.CgroupID = ^uint32(0), ^uint64(0)
	c = append(c, nobody)

	hostile := testConn
	hostile.Time = hostile.Time.Add(time.Second + time.Microsecond)
	hostile.Pid, hostile.Comm = ^uint32(0), "x\x1b[31m\"\\y\xffcafé-long-name"
	hostile.LAddr, hostile.RAddr = netip.Addr{}, netip.Addr{}
	hostile.Family = tcp.Family(0)
	hostile.Path = []conn.Step{{State: tcp.State(0), Duration: -time.Microsecond}, {State: tcp.State(200)}}
	c = append(c, hostile)
	return c
}

func TestGoldenLife(t *testing.T) {
	conns := testConns()
	for _, name := range []string{"table", "json"} {
		t.Run(name, func(t *testing.T) {
			f, err := NewLifeWith(name, Options{Pods: pods})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			p := NewPrinter(&buf, f)
			for i := range conns {
				if err := p.Print(&conns[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := p.Records(); got != uint64(len(conns)) {
				t.Errorf("Records() = %d, want %d", got, len(conns))
			}
			checkGolden(t, "life-"+name, buf.Bytes())
		})
	}
}

// lsSockets adds, to groupSockets, IPv6 sockets, an owner with a hostile
// comm and a second namespace.
func lsSockets() []snapshot.Socket {
	socks := append([]snapshot.Socket(nil), groupSockets...)
	v6 := sock(tcp.Established, "10.0.0.1:1", "10.0.0.2:2", 4*time.Hour, snapshot.Owner{Pid: 4194304, Comm: "x\x1b\"\\\xffcafé-long-name", FD: 1})
	v6.Family = tcp.IPv6
	v6.LAddr, v6.RAddr = netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), netip.MustParseAddr("::1")
	v6.LPort, v6.RPort = 65535, 443
	v6.NetNS = 2
	socks = append(socks, v6)
	syn := sock(tcp.SynRecv, "[::]:80", "[fe80::1]:5", 3*24*time.Hour+5*time.Hour)
	syn.Family = tcp.IPv6
	socks = append(socks, syn)
	return socks
}

func TestGoldenLs(t *testing.T) {
	socks := lsSockets()
	var out bytes.Buffer
	for _, format := range []string{"table", "json"} {
		for _, by := range []string{"state", "process", "remote", "local", "pod"} {
			fmt.Fprintf(&out, "== %s by %s\n", format, by)
			g, err := ParseGroupBy(by)
			if err != nil {
				t.Fatal(err)
			}
			sm := NewSummaryWith(g, pods)
			for i := range socks {
				sm.Add(&socks[i])
			}
			if err := WriteSummary(&out, format, sm); err != nil {
				t.Fatal(err)
			}
		}
	}
	out.WriteString("== table, empty\n")
	if err := WriteSummary(&out, "table", NewSummary(ByProcess)); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "ls", out.Bytes())
}

// stuckRows covers the cases of the stuck formats: every state's why,
// timers, owners, tcp_info, upper bounds and --watch events.
func stuckRows() []StuckRow {
	at := time.Date(2026, 11, 25, 21, 23, 5, 123456789, time.UTC)
	var rows []StuckRow
	add := func(s snapshot.Socket, age time.Duration, estimated bool, event, why string) {
		r := StuckRow{Time: at, Event: event, Sock: &s, Age: age, AgeEstimated: estimated, Why: why}
		if len(s.Owners) > 0 {
			r.Identity = pods[s.Owners[0].Pid]
		}
		rows = append(rows, r)
		at = at.Add(1234567 * time.Microsecond)
	}

	s := stuckSock()
	add(s, 5*time.Second, true, "", "")
	s.AgeMax, s.AgeMaxKnown = 90*time.Second, true
	add(s, 5*time.Second, true, "", "")
	add(s, 5*time.Second, true, "stuck", "")
	add(s, 7*time.Second, false, "left", "left CLOSE_WAIT: now LAST_ACK")

	orphan := sock(tcp.CloseWait, "10.0.0.1:80", "10.0.0.2:3", time.Minute)
	add(orphan, time.Minute, true, "", "")

	shared := stuckSock()
	shared.Owners = []snapshot.Owner{{Pid: 1, Comm: "a", FD: 3}, {Pid: 2, Comm: "b\x1b\"\\\xff", FD: 4}, {Pid: 4194304, Comm: "123456789012345", FD: 1 << 20}}
	shared.State, shared.Timer, shared.Retrans, shared.Expires = tcp.FinWait1, snapshot.TimerProbe, 2, time.Second
	shared.SendQ = 1 << 31
	add(shared, 2*time.Hour, true, "", "")

	fw1 := stuckSock()
	fw1.State, fw1.Timer, fw1.Retrans, fw1.Expires = tcp.FinWait1, snapshot.TimerRetransmit, 9, 22500*time.Millisecond
	fw1.Info.Backoff, fw1.Info.RTO, fw1.Info.Retransmits = 3, 32*time.Second, 9
	add(fw1, 3*time.Minute, true, "", "")

	tw := sock(tcp.FinWait2, "[::1]:49682", "[::1]:7300", 0)
	tw.Family, tw.Kind, tw.Timer, tw.Expires = tcp.IPv6, snapshot.TimeWaitSocket, snapshot.TimerTimeWait, 57*time.Second
	add(tw, 3*time.Second, false, "", "")
	add(tw, 3*time.Second, false, "left", "left FIN_WAIT2: closed")

	held := stuckSock()
	held.State = tcp.FinWait2
	held.Timer, held.Retrans, held.Expires = snapshot.TimerKeepalive, 3, 75*time.Second
	add(held, 25*time.Hour, true, "", "")

	for _, st := range []tcp.State{tcp.LastAck, tcp.Closing, tcp.SynSent, tcp.SynRecv, tcp.TimeWait, tcp.Established, tcp.Listen, tcp.State(0), tcp.State(200)} {
		x := sock(st, "192.168.100.200:65535", "255.255.255.255:65535", 0)
		x.Timer, x.Retrans, x.Expires = snapshot.TimerRetransmit, 1, 200*time.Millisecond
		add(x, 999*time.Millisecond, true, "", "")
	}
	syn := stuckSock()
	syn.State, syn.Timer, syn.Retrans, syn.Expires = tcp.SynSent, snapshot.TimerRetransmit, 5, 1592*time.Millisecond
	syn.Info.Backoff, syn.Info.RTO = 1, 2*time.Second
	add(syn, 44*time.Second, true, "", "")
	odd := stuckSock()
	odd.Timer, odd.Expires, odd.HasInfo = snapshot.Timer(9), -time.Second, false
	add(odd, -time.Second, true, "", "")
	return rows
}

func TestGoldenStuck(t *testing.T) {
	rows := stuckRows()
	for _, c := range []struct {
		format string
		watch  bool
	}{{"table", false}, {"table", true}, {"json", false}, {"json", true}} {
		name := "stuck-" + c.format
		if c.watch {
			name += "-watch"
		}
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewStuckWriter(&buf, c.format, c.watch)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Begin(); err != nil {
				t.Fatal(err)
			}
			for i := range rows {
				if err := w.Write(&rows[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, name, buf.Bytes())
		})
	}
}

// benchConns prints connections like 'life' on a busy host.
func benchConns(b *testing.B, f LifeFormat) {
	p := NewPrinter(io.Discard, f)
	conns := testConns()
	start := time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC)
	var c conn.Connection
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c = conns[i%len(conns)]
		c.Time = start.Add(time.Duration(i) * 7 * time.Microsecond)
		c.Start = c.Time.Add(-c.Duration)
		if err := p.Print(&c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLifeJSON(b *testing.B) {
	f, _ := NewLife("json")
	benchConns(b, f)
}

func BenchmarkLifeTable(b *testing.B) {
	f, _ := NewLife("table")
	benchConns(b, f)
}

// BenchmarkStuckJSON formats one row of 'stuck -o json'.
func BenchmarkStuckJSON(b *testing.B) {
	rows := stuckRows()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = AppendStuckJSON(buf[:0], &rows[i%len(rows)])
	}
}
