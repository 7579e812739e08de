// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// ResetReason is why the kernel sent a RST: its enum sk_rst_reason (Linux
// 6.10 and later) as tcpstate's own number (bpf/tcpstate.h's enum
// rst_reason), since the kernel's values differ between versions.
type ResetReason uint8

// Reset reasons; ReasonUnknown where the kernel gives none (before 6.10,
// and for RSTs received: the peer's reason is not on the wire).
const (
	ReasonUnknown            = ResetReason(tcpstateRstReasonRR_UNKNOWN)
	ReasonNotSpecified       = ResetReason(tcpstateRstReasonRR_NOT_SPECIFIED)
	ReasonNoSocket           = ResetReason(tcpstateRstReasonRR_NO_SOCKET)
	ReasonAbortOnData        = ResetReason(tcpstateRstReasonRR_TCP_ABORT_ON_DATA)
	ReasonAbortOnClose       = ResetReason(tcpstateRstReasonRR_TCP_ABORT_ON_CLOSE)
	ReasonAbortOnLinger      = ResetReason(tcpstateRstReasonRR_TCP_ABORT_ON_LINGER)
	ReasonAbortOnMemory      = ResetReason(tcpstateRstReasonRR_TCP_ABORT_ON_MEMORY)
	ReasonState              = ResetReason(tcpstateRstReasonRR_TCP_STATE)
	ReasonKeepaliveTimeout   = ResetReason(tcpstateRstReasonRR_TCP_KEEPALIVE_TIMEOUT)
	ReasonTimewaitSocket     = ResetReason(tcpstateRstReasonRR_TCP_TIMEWAIT_SOCKET)
	ReasonInvalidSyn         = ResetReason(tcpstateRstReasonRR_INVALID_SYN)
	NumResetReasons          = int(tcpstateTallyLayoutNR_RESET_REASONS)
	numKnownReasons          = int(tcpstateRstReasonNR_RST_REASONS)
	reasonOther              = ResetReason(tcpstateRstReasonRR_OTHER)
	reasonMPTCP              = ResetReason(tcpstateRstReasonRR_MPTCP)
	reasonInvalidAckSequence = ResetReason(tcpstateRstReasonRR_TCP_INVALID_ACK_SEQUENCE)
)

// reasonNames are the kernel's names without SK_RST_REASON_, and what
// each means in a few words, from the kernel code that sends it (6.18).
var reasonNames = [numKnownReasons]struct{ name, words string }{
	tcpstateRstReasonRR_UNKNOWN:       {"unknown", "reason unknown"},
	tcpstateRstReasonRR_NOT_SPECIFIED: {"NOT_SPECIFIED", "no reason given"},
	// tcp_v4_rcv/tcp_v6_rcv: a SYN to a port nobody listens on, or a
	// segment of a connection this host does not know (any more).
	tcpstateRstReasonRR_NO_SOCKET:                {"NO_SOCKET", "port closed or connection unknown"},
	reasonInvalidAckSequence:                     {"TCP_INVALID_ACK_SEQUENCE", "handshake ACK out of window"},
	tcpstateRstReasonRR_TCP_RFC7323PAWS:          {"TCP_RFC7323_PAWS", "old timestamp: PAWS"},
	tcpstateRstReasonRR_TCP_TOO_OLD_ACK:          {"TCP_TOO_OLD_ACK", "ACK of too old data"},
	tcpstateRstReasonRR_TCP_ACK_UNSENT_DATA:      {"TCP_ACK_UNSENT_DATA", "ACK of data never sent"},
	tcpstateRstReasonRR_TCP_FLAGS:                {"TCP_FLAGS", "unexpected flags"},
	tcpstateRstReasonRR_TCP_OLD_ACK:              {"TCP_OLD_ACK", "ACK of old data"},
	tcpstateRstReasonRR_TCP_ABORT_ON_DATA:        {"TCP_ABORT_ON_DATA", "data after close"},
	tcpstateRstReasonRR_TCP_TIMEWAIT_SOCKET:      {"TCP_TIMEWAIT_SOCKET", "segment to a TIME_WAIT"},
	tcpstateRstReasonRR_INVALID_SYN:              {"INVALID_SYN", "invalid SYN"},
	tcpstateRstReasonRR_TCP_ABORT_ON_CLOSE:       {"TCP_ABORT_ON_CLOSE", "closed with unread data"},
	tcpstateRstReasonRR_TCP_ABORT_ON_LINGER:      {"TCP_ABORT_ON_LINGER", "FIN_WAIT2 time limit: TCP_LINGER2"},
	tcpstateRstReasonRR_TCP_ABORT_ON_MEMORY:      {"TCP_ABORT_ON_MEMORY", "too many orphans or no memory"},
	tcpstateRstReasonRR_TCP_STATE:                {"TCP_STATE", "abortive close: SO_LINGER 0 or disconnect"},
	tcpstateRstReasonRR_TCP_KEEPALIVE_TIMEOUT:    {"TCP_KEEPALIVE_TIMEOUT", "keepalive timeout"},
	tcpstateRstReasonRR_TCP_DISCONNECT_WITH_DATA: {"TCP_DISCONNECT_WITH_DATA", "disconnect with data unsent"},
	tcpstateRstReasonRR_ERROR:                    {"ERROR", "error"},
	tcpstateRstReasonRR_MPTCP:                    {"MPTCP", "MPTCP"},
	tcpstateRstReasonRR_OTHER:                    {"OTHER", "a reason newer than tcpstate"},
}

// String returns the kernel's name without SK_RST_REASON_ ("unknown"
// when the kernel gives none, "MPTCP" for MPTCP's, "OTHER" for a name this
// tcpstate does not know).
func (r ResetReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r].name
	}
	return reasonNames[reasonOther].name
}

// Words says what the reason means, for people.
func (r ResetReason) Words() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r].words
	}
	return reasonNames[reasonOther].words
}

// Errno is the error a socket ended on, as its application saw it
// (sk_err at CLOSE); 0 for none.
type Errno uint8

// String returns the errno's name, such as "ECONNRESET"; "" for none.
func (e Errno) String() string {
	if e == 0 {
		return ""
	}
	if n := unix.ErrnoName(unix.Errno(e)); n != "" {
		return n
	}
	return "E" + strconv.Itoa(int(e))
}

// reasonNotice says, once, what the running kernel does not tell of the
// RSTs it sends: no reason before Linux 6.10 (reset_reason is then
// "unknown"), and before 6.9 no RSTs for segments that found no socket.
func (t *Tracer) reasonNotice() string {
	if !t.btf || t.tally {
		return ""
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return ""
	}
	var reason *btf.Enum
	if spec.TypeByName("sk_rst_reason", &reason) == nil {
		return ""
	}
	return "this kernel gives no reason for the RSTs it sends (Linux 6.10 and later do): reset_reason says unknown; before Linux 6.9 the RSTs sent for segments that found no socket are not seen at all"
}

// ParseResetReason is the inverse of ResetReason.String.
func ParseResetReason(name string) (ResetReason, error) {
	for i, n := range reasonNames {
		if n.name == name {
			return ResetReason(i), nil
		}
	}
	return 0, fmt.Errorf("reset_reason %q: not one tcpstate knows", name)
}

// ParseErrno is the inverse of Errno.String.
func ParseErrno(name string) (Errno, error) {
	for e := Errno(1); e != 0; e++ {
		if unix.ErrnoName(unix.Errno(e)) == name {
			return e, nil
		}
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(name, "E")); err == nil && n > 0 && n < 256 {
		return Errno(n), nil
	}
	return 0, fmt.Errorf("error %q: not an errno name", name)
}
