// SPDX-License-Identifier: Apache-2.0

package output

import (
	"net/netip"
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
	if sm.total != len(groupSockets) || sm.Namespaces() != 1 {
		t.Errorf("total %d in %d namespaces", sm.total, sm.Namespaces())
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
