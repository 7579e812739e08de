// SPDX-License-Identifier: Apache-2.0

package tcp

import "testing"

func TestStateNames(t *testing.T) {
	want := []string{"ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
		"CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}
	states := States()
	if len(states) != len(want) {
		t.Fatalf("%d states, want %d", len(states), len(want))
	}
	for i, s := range states {
		if int(s) != i+1 || s.String() != want[i] {
			t.Errorf("state %d is %s, want %d %s", s, s, i+1, want[i])
		}
	}
	if got := State(42).String(); got != "STATE_42" {
		t.Errorf("unknown state prints %q", got)
	}
}

func TestParseState(t *testing.T) {
	for in, want := range map[string]State{
		"CLOSE_WAIT": CloseWait, "close-wait": CloseWait, "TCP_CLOSE_WAIT": CloseWait, "tcp_close_wait": CloseWait,
		"fin-wait-2": FinWait2, "FIN_WAIT2": FinWait2, "fin_wait_1": FinWait1, "time-wait": TimeWait,
		"syn-recv": SynRecv, "SYN_SENT": SynSent, "closed": Close, "close": Close, " listen ": Listen,
		"new_syn_recv": NewSynRecv, "Established": Established, "last-ack": LastAck, "closing": Closing,
	} {
		got, err := ParseState(in)
		if err != nil || got != want {
			t.Errorf("ParseState(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "WAIT", "CLOSE_WAITS", "TCP_", "7"} {
		if s, err := ParseState(in); err == nil {
			t.Errorf("ParseState(%q) = %s, want an error", in, s)
		}
	}
}
