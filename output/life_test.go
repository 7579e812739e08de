// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/conn"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

var testConn = conn.Connection{
	Time: time.Date(2026, 11, 25, 21, 34, 3, 510346796, time.UTC), Pid: 24912, Comm: "python3",
	Family: tcp.IPv4, LAddr: netip.MustParseAddr("127.0.0.1"), LPort: 47300,
	RAddr: netip.MustParseAddr("127.0.0.1"), RPort: 7711,
	Start: time.Date(2026, 11, 25, 21, 34, 3, 330001358, time.UTC), Duration: 180345438 * time.Nanosecond,
	Path: []conn.Step{{State: tcp.SynSent, Duration: 70 * time.Microsecond}, {State: tcp.Established, Duration: 78 * time.Microsecond},
		{State: tcp.FinWait1, Duration: 43724 * time.Microsecond}, {State: tcp.FinWait2, Duration: 136471 * time.Microsecond}, {State: tcp.TimeWait, Duration: 0}},
	TxBytes: 5, RxBytes: 6, ClosedBy: "local", Reset: tracer.ResetSent, ISN: 1907384451, PeerISN: 4102017442, ISNKnown: true,
	NetNS: 4026531833, CgroupID: 1,
}

func TestLifeJSON(t *testing.T) {
	f, err := NewLife("json")
	if err != nil {
		t.Fatal(err)
	}
	line := f.Append(nil, &testConn)
	want := `{"time":"2026-11-25T21:34:03.510346796Z","pid":24912,"comm":"python3","family":"ipv4",` +
		`"laddr":"127.0.0.1","lport":47300,"raddr":"127.0.0.1","rport":7711,"start":"2026-11-25T21:34:03.330001358Z",` +
		`"duration_us":180345,"path":[{"state":"SYN_SENT","us":70},{"state":"ESTABLISHED","us":78},` +
		`{"state":"FIN_WAIT1","us":43724},{"state":"FIN_WAIT2","us":136471},{"state":"TIME_WAIT","us":0}],` +
		`"tx_bytes":5,"rx_bytes":6,"retrans":0,"closed_by":"local","half_close":false,"reset":"sent","reset_reason":"unknown",` +
		`"isn":1907384451,"peer_isn":4102017442,"netns":4026531833,"cgroup_id":1}` + "\n"
	if string(line) != want {
		t.Errorf("got\n%s\nwant\n%s", line, want)
	}
	if !json.Valid(line) {
		t.Error("not JSON")
	}
	c := testConn
	c.ClosedBy, c.Reset, c.ISNKnown, c.Partial = "", 0, false, true
	line = f.Append(nil, &c)
	for _, gone := range []string{"closed_by", "reset", "isn"} {
		if bytes.Contains(line, []byte(`"`+gone+`"`)) {
			t.Errorf("%s present when unknown: %s", gone, line)
		}
	}
	if !bytes.Contains(line, []byte(`"partial":true`)) {
		t.Errorf("partial missing: %s", line)
	}
}

func TestLifeTable(t *testing.T) {
	f, err := NewLife("table")
	if err != nil {
		t.Fatal(err)
	}
	header := string(f.Header())
	line := string(f.Append(nil, &testConn))
	want := "21:34:03.510   24912 python3         127.0.0.1:47300        127.0.0.1:7711            180.345         5         6 SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT (reset sent)\n"
	if line != want {
		t.Errorf("got\n%q\nwant\n%q", line, want)
	}
	// Columns line up with the header.
	for _, col := range []string{"PID", "MS", "TX", "RX"} {
		end := strings.Index(header, col) + len(col)
		if end < len(col) || line[end-1] == ' ' || line[end] != ' ' {
			t.Errorf("column %s does not end at %d in %q", col, end, line)
		}
	}
	if strings.Index(header, "PATH") != strings.Index(line, "SYN_SENT") {
		t.Errorf("PATH column misaligned:\n%s%s", header, line)
	}
}

func TestLifeZeroAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation allocates")
	}
	conns := testConns()
	for _, name := range []string{"table", "json"} {
		f, err := NewLife(name)
		if err != nil {
			t.Fatal(err)
		}
		p := NewPrinter(io.Discard, f)
		for i := range conns {
			c := &conns[i]
			if n := testing.AllocsPerRun(100, func() { _ = p.Print(c) }); n != 0 {
				t.Errorf("Printer.Print with life %s, connection %d: %v allocs, want 0", name, i, n)
			}
		}
	}
}
