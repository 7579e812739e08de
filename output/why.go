// SPDX-License-Identifier: Apache-2.0

package output

import (
	"strconv"

	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
)

// Why says in one line why a socket is in its state, with the timer
// facts that explain it.
func Why(s *snapshot.Socket) string {
	var why string
	switch s.State {
	case tcp.CloseWait:
		why = "the peer closed and this process has not called close()"
		if len(s.Owners) == 0 && s.Inode == 0 {
			why = "the peer closed and nothing has called close()"
		}
	case tcp.FinWait1:
		why = "our FIN is not acknowledged: the peer may be gone"
		if s.Timer == snapshot.TimerProbe {
			why = "our FIN waits behind data the peer does not accept: its receive window is closed"
		}
	case tcp.FinWait2:
		why = "waiting for the peer to close; tcp_fin_timeout applies only to orphans"
		switch {
		case s.Kind == snapshot.TimeWaitSocket:
			why += " (this one is: closed here, dropped in " + string(AppendAge(nil, s.Expires)) + ")"
		case len(s.Owners) > 0 || s.Inode != 0:
			why += " (this one is not: a process still holds it, so it can wait forever)"
		}
	case tcp.LastAck:
		why = "our FIN is not acknowledged, the peer may be gone"
	case tcp.Closing:
		why = "both sides sent FIN, ours is not acknowledged"
	case tcp.SynSent:
		why = "no answer to our SYN: the peer or a firewall drops it, or the host is down"
	case tcp.SynRecv:
		why = "handshake not completed by the client: our SYN-ACK is not acknowledged"
	case tcp.TimeWait:
		why = "normal after closing first: kept 60 s so late segments are not taken for a new connection"
	case tcp.Established:
		why = "connection open"
	case tcp.Listen:
		why = "listening"
		if s.AcceptQueueFull() {
			why = "accept queue full (" + strconv.FormatUint(uint64(s.RecvQ), 10) + " waiting, backlog " +
				strconv.FormatUint(uint64(s.SendQ), 10) + "): the application is not calling accept() (fast enough); the kernel drops new SYNs and handshake ACKs"
		}
		if s.HasDrops && s.Drops > 0 {
			why += " (" + strconv.FormatUint(uint64(s.Drops), 10) + " dropped since the socket exists)"
		}
	default:
		why = "state " + s.State.String()
	}
	if f := timerFacts(s); f != "" {
		why += " (" + f + ")"
	}
	return why
}

// timerFacts describes retransmissions and probes in words.
func timerFacts(s *snapshot.Socket) string {
	what := "FIN"
	switch s.State {
	case tcp.SynSent:
		what = "SYN"
	case tcp.SynRecv:
		what = "SYN-ACK"
	case tcp.FinWait1, tcp.LastAck, tcp.Closing:
	default:
		what = "data"
	}
	next := string(AppendAge(nil, s.Expires))
	switch s.Timer {
	case snapshot.TimerRetransmit:
		n := int(s.Retrans)
		if n == 0 {
			return ""
		}
		f := what + " retransmitted " + strconv.Itoa(n) + " time"
		if n > 1 {
			f += "s"
		}
		if s.HasInfo && s.Info.Backoff > 0 {
			f += ", timeout backed off to " + string(AppendAge(nil, s.Info.RTO))
		}
		return f + ", next in " + next
	case snapshot.TimerProbe:
		return strconv.Itoa(int(s.Retrans)) + " zero window probes unanswered, next in " + next
	case snapshot.TimerKeepalive:
		if s.Retrans > 0 {
			return strconv.Itoa(int(s.Retrans)) + " keepalive probes unanswered"
		}
	}
	return ""
}
