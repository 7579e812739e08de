// SPDX-License-Identifier: Apache-2.0

package output

import (
	"net/netip"
	"strconv"
	"unicode/utf8"

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
}

// NewJSON returns the NDJSON format.
func NewJSON() Format {
	return &jsonFormat{clock: clock{layout: "2006-01-02T15:04:05", zone: true, digits: 9}}
}

func (*jsonFormat) Header() []byte { return nil }

func (f *jsonFormat) AppendEvent(dst []byte, ev *tracer.Event) []byte {
	dst = append(dst, `{"time":"`...)
	dst = f.clock.append(dst, ev.Time)
	dst = append(dst, `","skaddr":"0x`...)
	dst = strconv.AppendUint(dst, ev.Skaddr, 16)
	dst = append(dst, `","pid":`...)
	dst = strconv.AppendUint(dst, uint64(ev.Pid), 10)
	dst = append(dst, `,"comm":`...)
	dst = appendJSONString(dst, ev.Comm)
	dst = append(dst, `,"family":"`...)
	dst = append(dst, ev.Family.String()...)
	dst = append(dst, `","laddr":"`...)
	if ev.LAddr.IsValid() {
		dst = ev.LAddr.AppendTo(dst) // never needs escaping
	}
	dst = append(dst, `","lport":`...)
	dst = strconv.AppendUint(dst, uint64(ev.LPort), 10)
	dst = append(dst, `,"raddr":"`...)
	if ev.RAddr.IsValid() {
		dst = ev.RAddr.AppendTo(dst)
	}
	dst = append(dst, `","rport":`...)
	dst = strconv.AppendUint(dst, uint64(ev.RPort), 10)
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
	dst = append(dst, `,"netns":`...)
	dst = strconv.AppendUint(dst, uint64(ev.NetNS), 10)
	dst = append(dst, `,"cgroup_id":`...)
	dst = strconv.AppendUint(dst, ev.CgroupID, 10)
	if ev.Synthesized {
		dst = append(dst, `,"synthesized":true`...)
	}
	if f.seq {
		dst = append(dst, `,"snd_una":`...)
		dst = strconv.AppendUint(dst, uint64(ev.SndUna), 10)
		dst = append(dst, `,"snd_nxt":`...)
		dst = strconv.AppendUint(dst, uint64(ev.SndNxt), 10)
		dst = append(dst, `,"rcv_nxt":`...)
		dst = strconv.AppendUint(dst, uint64(ev.RcvNxt), 10)
	}
	return append(dst, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a quoted JSON string. Comm is chosen by
// the traced process, so it may hold anything: control characters become
// \u00XX and bytes that are not UTF-8 become \ufffd (as encoding/json
// does), keeping every line valid JSON.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, copied verbatim
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			if c == '"' || c == '\\' {
				dst = append(dst, '\\', c)
			} else {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendAddrJSON(b []byte, a netip.Addr) []byte {
	if a.IsValid() {
		b = a.AppendTo(b)
	}
	return b
}
