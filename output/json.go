// SPDX-License-Identifier: Apache-2.0

package output

import (
	"strconv"

	"github.com/tcpstate/tcpstate/tracer"
)

// jsonFormat writes one JSON object per line (NDJSON). It is hand-rolled
// rather than using encoding/json so that the hot path does not allocate
// and the key order is fixed.
// Times are RFC 3339 with a fixed 9 fractional digits, so that lines sort
// and align the same way as their timestamps.
type jsonFormat struct {
	clock clock
	seq   bool
	pods  Identifier
	where netNSCgroupCache
}

func newJSON(o Options) *jsonFormat {
	return &jsonFormat{clock: clock{layout: "2006-01-02T15:04:05", zone: true, digits: 9}, seq: o.Seq, pods: o.Pods}
}

func (*jsonFormat) Header() []byte { return nil }

func (f *jsonFormat) Append(dst []byte, ev *tracer.Event) []byte {
	dst = append(dst, `{"time":"`...)
	dst = f.clock.append(dst, ev.Time)
	dst = append(dst, `","skaddr":"0x`...)
	dst = appendHex(dst, ev.Skaddr)
	dst = append(dst, `",`...)
	dst = appendOwnerJSON(dst, ev.Pid, ev.Comm)
	dst = append(dst, ',')
	dst = appendTupleJSON(dst, ev.Family.String(), ev.LAddr, ev.LPort, ev.RAddr, ev.RPort)
	dst = append(dst, `,"oldstate":"`...)
	dst = appendState(dst, ev.OldState)
	dst = append(dst, `","newstate":"`...)
	dst = appendState(dst, ev.NewState)
	dst = append(dst, '"')
	if ev.InStateKnown {
		// Omitted rather than 0 or null: 0 is a real duration.
		dst = append(dst, `,"in_state_us":`...)
		dst = strconv.AppendInt(dst, int64(ev.InState/1e3), 10)
	}
	dst = append(dst, ',')
	dst = f.where.append(dst, ev.NetNS, ev.CgroupID)
	if f.pods != nil {
		dst = appendIdentityJSON(dst, f.pods.Lookup(ev.Pid, ev.CgroupID, ev.Time))
	}
	if ev.Synthesized {
		dst = append(dst, `,"synthesized":true`...)
	}
	dst = appendWhyJSON(dst, ev, !f.seq)
	if f.seq {
		dst = append(dst, `,"snd_una":`...)
		dst = strconv.AppendUint(dst, uint64(ev.SndUna), 10)
		dst = append(dst, `,"snd_nxt":`...)
		dst = strconv.AppendUint(dst, uint64(ev.SndNxt), 10)
		dst = append(dst, `,"rcv_nxt":`...)
		dst = strconv.AppendUint(dst, uint64(ev.RcvNxt), 10)
		// What 'tcpstate ladder --from' needs besides: SYN
		// retransmissions, resets, and the cookie that ties a
		// TIME_WAIT's end to its connection.
		dst = append(dst, `,"retrans":`...)
		dst = strconv.AppendUint(dst, uint64(ev.Retrans), 10)
		dst = append(dst, `,"cookie":`...)
		dst = strconv.AppendUint(dst, ev.Cookie, 10)
	}
	return append(dst, "}\n"...)
}

// appendWhyJSON appends what tells why a connection ended: the RST and
// the kernel's reason for one sent, the error its application saw, and
// (with retrans, when --seq does not add it anyway) the retransmissions
// before it; and what a record that is not a transition is.
func appendWhyJSON(dst []byte, ev *tracer.Event, retrans bool) []byte {
	switch ev.Note {
	case tracer.NoteLateReset:
		dst = append(dst, `,"note":"reset_after_close"`...)
	case tracer.NoteNoSocket:
		dst = append(dst, `,"note":"no_socket"`...)
		if ev.Suppressed > 0 {
			dst = append(dst, `,"unrecorded_before":`...)
			dst = strconv.AppendUint(dst, uint64(ev.Suppressed), 10)
		}
	}
	dst = appendEndJSON(dst, ev.Reset, ev.ResetReason, ev.Error)
	if ev.Error != 0 && retrans {
		dst = append(dst, `,"retrans":`...)
		dst = strconv.AppendUint(dst, uint64(ev.Retrans), 10)
	}
	return dst
}

// appendHex appends strconv.AppendUint(dst, v, 16), which takes the slow
// general path for base 16.
func appendHex(dst []byte, v uint64) []byte {
	var buf [16]byte
	i := len(buf)
	for {
		i--
		buf[i] = hexDigits[v&0xf]
		v >>= 4
		if v == 0 {
			break
		}
	}
	return append(dst, buf[i:]...)
}
