// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// eventSize is sizeof(struct event) in bpf/tcpstate.h.
const eventSize = 152

// Byte offsets of struct event's fields.
const (
	offTs      = 0
	offPrevTs  = 8
	offSkaddr  = 16
	offCgroup  = 24
	offPid     = 32
	offNetns   = 36
	offSaddr   = 40
	offDaddr   = 56
	offSport   = 72
	offDport   = 74
	offFamily  = 76
	offOld     = 78
	offNew     = 79
	offComm    = 80
	offCookie  = 96
	offTx      = 104
	offRx      = 112
	offSndUna  = 120
	offSndNxt  = 124
	offRcvNxt  = 128
	offRetrans = 132
	offFlags   = 136
	offReset   = 138
	offNetnsCk = 144
	afInet     = 2
	afInet6    = 10
	commLength = 16
)

// event.flags, as in bpf/tcpstate.h.
const (
	evSynth      = 1
	evTentative  = 2
	evRearm      = 4
	evResetNote  = 8
	evOrphanNote = 16
)

// decoder turns raw ring buffer records into Events. It keeps a small
// cache of comm strings so that decoding allocates nothing in the steady
// state.
type decoder struct {
	// bootWall is the wall clock at monotonic time 0, in ns.
	bootWall int64
	comms    map[[commLength]byte]string
}

const maxComms = 4096

func newDecoder(bootWall int64) *decoder {
	return &decoder{bootWall: bootWall, comms: make(map[[commLength]byte]string)}
}

// decode fills ev from one record. It checks the length and the values it
// interprets, so a record from a mismatched BPF object is an error, not
// garbage.
func (d *decoder) decode(raw []byte, ev *Event) error {
	if len(raw) < eventSize {
		return fmt.Errorf("decode event: record is %d bytes, want %d", len(raw), eventSize)
	}
	le := binary.LittleEndian
	ts := le.Uint64(raw[offTs:])
	prev := le.Uint64(raw[offPrevTs:])
	ev.Time = time.Unix(0, d.bootWall+int64(ts))
	ev.InStateKnown = prev != 0 && prev <= ts
	ev.InState = 0
	if ev.InStateKnown {
		ev.InState = time.Duration(ts - prev)
	}
	ev.Skaddr = le.Uint64(raw[offSkaddr:])
	ev.CgroupID = le.Uint64(raw[offCgroup:])
	ev.Pid = le.Uint32(raw[offPid:])
	ev.NetNS = le.Uint32(raw[offNetns:])
	ev.LPort = le.Uint16(raw[offSport:])
	ev.RPort = le.Uint16(raw[offDport:])
	switch fam := le.Uint16(raw[offFamily:]); fam {
	case afInet:
		ev.Family = IPv4
		ev.LAddr = netip.AddrFrom4([4]byte(raw[offSaddr : offSaddr+4]))
		ev.RAddr = netip.AddrFrom4([4]byte(raw[offDaddr : offDaddr+4]))
	case afInet6:
		ev.Family = IPv6
		ev.LAddr = netip.AddrFrom16([16]byte(raw[offSaddr : offSaddr+16])).Unmap()
		ev.RAddr = netip.AddrFrom16([16]byte(raw[offDaddr : offDaddr+16])).Unmap()
	default:
		return fmt.Errorf("decode event: unknown address family %d", fam)
	}
	ev.OldState = State(raw[offOld])
	ev.NewState = State(raw[offNew])
	if ev.OldState < Established || ev.OldState > NewSynRecv || ev.NewState < Established || ev.NewState > NewSynRecv {
		return fmt.Errorf("decode event: unknown state %d -> %d", raw[offOld], raw[offNew])
	}
	ev.Comm = d.comm([commLength]byte(raw[offComm : offComm+commLength]))
	ev.mono = ts
	ev.Cookie = le.Uint64(raw[offCookie:])
	ev.NetNSCookie = le.Uint64(raw[offNetnsCk:])
	ev.flags = le.Uint16(raw[offFlags:])
	ev.Synthesized = ev.flags&evSynth != 0
	ev.Reset = Reset(raw[offReset])
	ev.TxBytes = le.Uint64(raw[offTx:])
	ev.RxBytes = le.Uint64(raw[offRx:])
	ev.SndUna = le.Uint32(raw[offSndUna:])
	ev.SndNxt = le.Uint32(raw[offSndNxt:])
	ev.RcvNxt = le.Uint32(raw[offRcvNxt:])
	ev.Retrans = le.Uint32(raw[offRetrans:])
	return nil
}

// comm returns the string of a NUL-padded comm, interned.
func (d *decoder) comm(b [commLength]byte) string {
	if s, ok := d.comms[b]; ok {
		return s
	}
	n := 0
	for n < commLength-1 && b[n] != 0 { // the kernel keeps a NUL; never trust it
		n++
	}
	s := string(b[:n])
	if len(d.comms) >= maxComms {
		clear(d.comms) // bounded: a host with more names just pays again
	}
	d.comms[b] = s
	return s
}
