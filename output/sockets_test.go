// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
)

func sock(st tcp.State, l, r string, age time.Duration, owners ...snapshot.Owner) snapshot.Socket {
	la, ra := netip.MustParseAddrPort(l), netip.MustParseAddrPort(r)
	return snapshot.Socket{State: st, Family: tcp.IPv4, LAddr: la.Addr(), LPort: la.Port(), RAddr: ra.Addr(), RPort: ra.Port(),
		Age: age, AgeKnown: age >= 0, Owners: owners, NetNS: 1}
}

var (
	nginx  = snapshot.Owner{Pid: 10, Comm: "nginx", FD: 7}
	nginx8 = snapshot.Owner{Pid: 10, Comm: "nginx", FD: 8}
	worker = snapshot.Owner{Pid: 11, Comm: "worker", FD: 3}
)

func summaryOf(by GroupBy, socks []snapshot.Socket) *Summary {
	sm := NewSummary(by)
	for i := range socks {
		sm.Add(&socks[i])
	}
	return sm
}

var groupSockets = []snapshot.Socket{
	sock(tcp.TimeWait, "10.0.0.1:40000", "10.0.0.9:80", 3*time.Second),
	sock(tcp.TimeWait, "10.0.0.1:40001", "10.0.0.9:80", 50*time.Second),
	sock(tcp.TimeWait, "10.0.0.1:40002", "10.0.0.8:80", 1*time.Second),
	sock(tcp.CloseWait, "10.0.0.1:8080", "10.0.0.7:5000", 2*time.Minute, nginx),
	sock(tcp.CloseWait, "10.0.0.1:8080", "10.0.0.7:5001", 3*time.Minute, nginx, nginx8, worker), // shared
	sock(tcp.CloseWait, "10.0.0.1:8081", "10.0.0.9:5002", time.Second, worker),
	sock(tcp.Listen, "0.0.0.0:8080", "0.0.0.0:0", -1, nginx),
	sock(tcp.Established, "10.0.0.1:8080", "10.0.0.7:5003", -1, nginx),
}

func TestSummaryByState(t *testing.T) {
	sm := summaryOf(ByState, groupSockets)
	want := []SummaryRow{
		{State: tcp.Established, Count: 1},
		{State: tcp.TimeWait, Count: 3, Oldest: 50 * time.Second, OldestKnown: true},
		{State: tcp.CloseWait, Count: 3, Oldest: 3 * time.Minute, OldestKnown: true},
		{State: tcp.Listen, Count: 1},
	}
	checkRows(t, sm.Rows(), want)
	if sm.Total() != len(groupSockets) || sm.Namespaces() != 1 {
		t.Errorf("total %d in %d namespaces", sm.Total(), sm.Namespaces())
	}
}

func TestSummaryByProcess(t *testing.T) {
	// The shared socket counts for nginx (once, though on two fds) and
	// for worker; TIME_WAIT has no process.
	want := []SummaryRow{
		{State: tcp.Established, Pid: 10, Comm: "nginx", Count: 1},
		{State: tcp.TimeWait, Count: 3, Oldest: 50 * time.Second, OldestKnown: true},
		{State: tcp.CloseWait, Pid: 10, Comm: "nginx", Count: 2, Oldest: 3 * time.Minute, OldestKnown: true},
		{State: tcp.CloseWait, Pid: 11, Comm: "worker", Count: 2, Oldest: 3 * time.Minute, OldestKnown: true},
		{State: tcp.Listen, Pid: 10, Comm: "nginx", Count: 1},
	}
	checkRows(t, summaryOf(ByProcess, groupSockets).Rows(), want)
}

func TestSummaryByRemoteAndLocal(t *testing.T) {
	a := netip.MustParseAddr
	checkRows(t, summaryOf(ByRemote, groupSockets).Rows(), []SummaryRow{
		{State: tcp.Established, Addr: a("10.0.0.7"), Count: 1},
		{State: tcp.TimeWait, Addr: a("10.0.0.9"), Count: 2, Oldest: 50 * time.Second, OldestKnown: true},
		{State: tcp.TimeWait, Addr: a("10.0.0.8"), Count: 1, Oldest: time.Second, OldestKnown: true},
		{State: tcp.CloseWait, Addr: a("10.0.0.7"), Count: 2, Oldest: 3 * time.Minute, OldestKnown: true},
		{State: tcp.CloseWait, Addr: a("10.0.0.9"), Count: 1, Oldest: time.Second, OldestKnown: true},
		{State: tcp.Listen, Addr: a("0.0.0.0"), Count: 1},
	})
	checkRows(t, summaryOf(ByLocal, groupSockets).Rows(), []SummaryRow{
		{State: tcp.Established, Addr: a("10.0.0.1"), Port: 8080, Count: 1},
		{State: tcp.TimeWait, Addr: a("10.0.0.1"), Port: 40000, Count: 1, Oldest: 3 * time.Second, OldestKnown: true},
		{State: tcp.TimeWait, Addr: a("10.0.0.1"), Port: 40001, Count: 1, Oldest: 50 * time.Second, OldestKnown: true},
		{State: tcp.TimeWait, Addr: a("10.0.0.1"), Port: 40002, Count: 1, Oldest: time.Second, OldestKnown: true},
		{State: tcp.CloseWait, Addr: a("10.0.0.1"), Port: 8080, Count: 2, Oldest: 3 * time.Minute, OldestKnown: true},
		{State: tcp.CloseWait, Addr: a("10.0.0.1"), Port: 8081, Count: 1, Oldest: time.Second, OldestKnown: true},
		{State: tcp.Listen, Addr: a("0.0.0.0"), Port: 8080, Count: 1},
	})
}

func checkRows(t *testing.T, got, want []SummaryRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d:\n%+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d:\n%+v\nwant\n%+v", i, got[i], want[i])
		}
	}
}

func TestWriteSummary(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSummary(&buf, "table", summaryOf(ByRemote, groupSockets)); err != nil {
		t.Fatal(err)
	}
	want := `STATE        RADDR                    COUNT  OLDEST
ESTABLISHED  10.0.0.7                     1  -
TIME_WAIT    10.0.0.9                     2  >=50.0s
TIME_WAIT    10.0.0.8                     1  >=1.0s
CLOSE_WAIT   10.0.0.7                     2  >=3m00s
CLOSE_WAIT   10.0.0.9                     1  >=1.0s
LISTEN       0.0.0.0                      1  -
total                                     8  in 1 network namespace
`
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	if err := WriteSummary(&buf, "json", summaryOf(ByProcess, groupSockets)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d JSON lines:\n%s", len(lines), buf.String())
	}
	if want := `{"state":"CLOSE_WAIT","pid":10,"comm":"nginx","count":2,"oldest_age_us":180000000}`; lines[2] != want {
		t.Errorf("JSON line %s, want %s", lines[2], want)
	}
	if want := `{"state":"ESTABLISHED","pid":10,"comm":"nginx","count":1}`; lines[0] != want {
		t.Errorf("JSON line %s, want %s", lines[0], want)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("%s: %v", l, err)
		}
	}
	buf.Reset()
	if err := WriteSummary(&buf, "table", summaryOf(ByState, groupSockets[:1])); err != nil {
		t.Fatal(err)
	}
	if want := "STATE          COUNT  OLDEST\nTIME_WAIT          1  >=3.0s\ntotal              1  in 1 network namespace\n"; buf.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", buf.String(), want)
	}
	if err := WriteSummary(&buf, "xml", NewSummary(ByState)); err == nil {
		t.Error("no error for format xml")
	}
}

func TestParseGroupBy(t *testing.T) {
	for in, want := range map[string]GroupBy{"": ByState, "state": ByState, "process": ByProcess, "remote": ByRemote, "local": ByLocal} {
		if got, err := ParseGroupBy(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParseGroupBy("pid"); err == nil {
		t.Error("pid accepted")
	}
}

func TestAppendAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0ms", 0: "0ms", 999 * time.Millisecond: "999ms", time.Second: "1.0s",
		59*time.Second + 990*time.Millisecond: "59.9s", time.Minute: "1m00s", 4*time.Minute + 5*time.Second: "4m05s",
		time.Hour - time.Millisecond: "59m59s", 3*time.Hour + 2*time.Minute: "3h02m",
		24 * time.Hour: "1d00h", 52 * time.Hour: "2d04h",
	} {
		if got := string(AppendAge(nil, d)); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}

func stuckSock() snapshot.Socket {
	s := sock(tcp.CloseWait, "127.0.0.1:7000", "127.0.0.1:59278", 5*time.Second, snapshot.Owner{Pid: 29835, Comm: "python3", FD: 5})
	s.RecvQ = 101
	s.NetNS = 4026532246
	s.Inode = 20671514
	s.HasInfo = true
	return s
}

func TestStuckJSON(t *testing.T) {
	s := stuckSock()
	at := time.Date(2026, 11, 25, 21, 23, 5, 0, time.UTC)
	line := AppendStuckJSON(nil, &StuckRow{Time: at, Sock: &s, Age: 5 * time.Second, AgeEstimated: true})
	want := `{"time":"2026-11-25T21:23:05.000000000Z","state":"CLOSE_WAIT","age_us":5000000,"age_estimated":true,` +
		`"family":"ipv4","laddr":"127.0.0.1","lport":7000,"raddr":"127.0.0.1","rport":59278,` +
		`"owners":[{"pid":29835,"comm":"python3","fd":5}],"recv_q":101,"send_q":0,"timer":"off","retrans":0,` +
		`"retransmits":0,"probes":0,"backoff":0,"why":"the peer closed and this process has not called close()","netns":4026532246}` + "\n"
	if string(line) != want {
		t.Errorf("JSON\n%s\nwant\n%s", line, want)
	}

	// An upper bound, in one-shot mode only.
	s.AgeMax, s.AgeMaxKnown = 90*time.Second, true
	line = AppendStuckJSON(nil, &StuckRow{Time: at, Sock: &s, Age: 5 * time.Second, AgeEstimated: true})
	if !bytes.Contains(line, []byte(`"age_estimated":true,"age_max_us":90000000,"family"`)) {
		t.Errorf("JSON without age_max_us after age_estimated: %s", line)
	}
	line = AppendStuckJSON(nil, &StuckRow{Time: at, Event: "stuck", Sock: &s, Age: 5 * time.Second, AgeEstimated: true})
	if bytes.Contains(line, []byte(`age_max_us`)) {
		t.Errorf("age_max_us with --watch: %s", line)
	}

	// A stub with a timer, no owner and no tcp_info, in --watch.
	tw := sock(tcp.FinWait2, "[::1]:49682", "[::1]:7300", 0)
	tw.Family, tw.Kind, tw.Timer, tw.Expires = tcp.IPv6, snapshot.TimeWaitSocket, snapshot.TimerTimeWait, 57*time.Second
	line = AppendStuckJSON(nil, &StuckRow{Time: at, Event: "left", Sock: &tw, Age: 3 * time.Second, Why: "left FIN_WAIT2: closed"})
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	keys := []string{"time", "state", "age_us", "age_estimated", "family", "laddr", "lport", "raddr", "rport", "owners",
		"recv_q", "send_q", "timer", "expires_us", "retrans", "why", "netns", "event"}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.Token()
	for i := 0; dec.More(); i++ {
		k, _ := dec.Token()
		if i >= len(keys) || k != keys[i] {
			t.Fatalf("key %d is %v, want %v: %s", i, k, keys, line)
		}
		var v any
		dec.Decode(&v)
	}
	if m["event"] != "left" || m["laddr"] != "::1" || m["expires_us"].(float64) != 57e6 || len(m["owners"].([]any)) != 0 || m["age_estimated"] != false {
		t.Errorf("JSON %s", line)
	}
}

func TestStuckTable(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewStuckWriter(&buf, "table", false)
	if err != nil {
		t.Fatal(err)
	}
	s := stuckSock()
	shared := stuckSock()
	shared.Owners = []snapshot.Owner{{Pid: 1, Comm: "a", FD: 3}, {Pid: 2, Comm: "b\x1b", FD: 4}}
	w.Write(&StuckRow{Sock: &s, Age: 5 * time.Second, AgeEstimated: true})
	w.Write(&StuckRow{Sock: &shared, Age: 5 * time.Second})
	w.Flush()
	want := `STATE              AGE LADDR:LPORT            RADDR:RPORT            RECV-Q SEND-Q PID/COMM:FD              TIMER              WHY
CLOSE_WAIT      >=5.0s 127.0.0.1:7000         127.0.0.1:59278           101      0 29835/python3:5          -                  the peer closed and this process has not called close()
CLOSE_WAIT        5.0s 127.0.0.1:7000         127.0.0.1:59278           101      0 1/a:3,2/b?:4             -                  the peer closed and this process has not called close()
`
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	w, _ = NewStuckWriter(&buf, "table", true)
	w.Write(&StuckRow{Time: time.Date(2026, 1, 1, 10, 0, 0, 0, time.Local), Event: "stuck", Sock: &s, Age: 30 * time.Second})
	w.Flush()
	lines := strings.Split(buf.String(), "\n")
	if !strings.HasPrefix(lines[0], "TIME         EVENT STATE") || !strings.HasPrefix(lines[1], "10:00:00.000 stuck CLOSE_WAIT       30.0s") {
		t.Errorf("watch table:\n%s", buf.String())
	}
	if _, err := NewStuckWriter(&buf, "yaml", false); err == nil {
		t.Error("yaml accepted")
	}
}

func TestWhy(t *testing.T) {
	st := func(state tcp.State, f func(*snapshot.Socket)) string {
		s := snapshot.Socket{State: state}
		if f != nil {
			f(&s)
		}
		return Why(&s)
	}
	cases := map[string]string{
		st(tcp.CloseWait, func(s *snapshot.Socket) { s.Inode = 5 }): "the peer closed and this process has not called close()",
		st(tcp.FinWait2, func(s *snapshot.Socket) { s.Inode = 5 }):  "waiting for the peer to close; tcp_fin_timeout applies only to orphans (this one is not: a process still holds it, so it can wait forever)",
		st(tcp.LastAck, nil): "our FIN is not acknowledged, the peer may be gone",
		st(tcp.Closing, nil): "both sides sent FIN, ours is not acknowledged",
		st(tcp.SynRecv, nil): "handshake not completed by the client: our SYN-ACK is not acknowledged",
		st(tcp.FinWait1, func(s *snapshot.Socket) { s.Timer = snapshot.TimerProbe; s.Retrans = 2; s.Expires = time.Second }): "our FIN waits behind data the peer does not accept: its receive window is closed (2 zero window probes unanswered, next in 1.0s)",
		st(tcp.FinWait2, func(s *snapshot.Socket) {
			s.Kind = snapshot.TimeWaitSocket
			s.Timer = snapshot.TimerTimeWait
			s.Expires = 57 * time.Second
		}): "waiting for the peer to close; tcp_fin_timeout applies only to orphans (this one is: closed here, dropped in 57.0s)",
		st(tcp.SynSent, func(s *snapshot.Socket) {
			s.Timer, s.Retrans, s.Expires, s.HasInfo = snapshot.TimerRetransmit, 5, 1592*time.Millisecond, true
			s.Info.Backoff, s.Info.RTO = 1, 2*time.Second
		}): "no answer to our SYN: the peer or a firewall drops it, or the host is down (SYN retransmitted 5 times, timeout backed off to 2.0s, next in 1.5s)",
		st(tcp.LastAck, func(s *snapshot.Socket) {
			s.Timer, s.Retrans, s.Expires = snapshot.TimerRetransmit, 1, 200*time.Millisecond
		}): "our FIN is not acknowledged, the peer may be gone (FIN retransmitted 1 time, next in 200ms)",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("why %q\nwant %q", got, want)
		}
	}
}
