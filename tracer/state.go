// SPDX-License-Identifier: Apache-2.0

package tracer

import "github.com/tcpstate/tcpstate/tcp"

// State is tcp.State. The names below let the tracer's own files say
// Established rather than tcp.Established; other packages use package tcp.
type State = tcp.State

// The kernel's TCP states (see package tcp).
const (
	Established = tcp.Established
	SynSent     = tcp.SynSent
	SynRecv     = tcp.SynRecv
	FinWait1    = tcp.FinWait1
	FinWait2    = tcp.FinWait2
	TimeWait    = tcp.TimeWait
	Close       = tcp.Close
	CloseWait   = tcp.CloseWait
	LastAck     = tcp.LastAck
	Listen      = tcp.Listen
	Closing     = tcp.Closing
	NewSynRecv  = tcp.NewSynRecv
)
