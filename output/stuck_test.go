// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
)

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
	w.Write(&StuckRow{Sock: &s, Age: 5 * time.Second, AgeEstimated: true, Identity: shopPod})
	w.Write(&StuckRow{Sock: &shared, Age: 5 * time.Second})
	w.Flush()
	want := `STATE              AGE LADDR:LPORT            RADDR:RPORT            RECV-Q SEND-Q PID/COMM:FD              NAMESPACE/POD                  TIMER              WHY
CLOSE_WAIT      >=5.0s 127.0.0.1:7000         127.0.0.1:59278           101      0 29835/python3:5          shop/cart-7d9f8b6c5-x2x4z      -                  the peer closed and this process has not called close()
CLOSE_WAIT        5.0s 127.0.0.1:7000         127.0.0.1:59278           101      0 1/a:3,2/b?:4             -                              -                  the peer closed and this process has not called close()
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
