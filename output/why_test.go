// SPDX-License-Identifier: Apache-2.0

package output

import (
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
)

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
