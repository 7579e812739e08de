// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"fmt"
	"math"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/tcp"
)

// eventSize is sizeof(struct event), from the bpf2go-generated type.
const eventSize = int(unsafe.Sizeof(tcpstateEvent{}))

// event.flags, generated from enum ev_flag in bpf/tcpstate.h.
const (
	evSynth      = uint16(tcpstateEvFlagEV_SYNTH)
	evResetNote  = uint16(tcpstateEvFlagEV_RESET_NOTE)
	evOrphanNote = uint16(tcpstateEvFlagEV_ORPHAN_NOTE)
	evPollNote   = uint16(tcpstateEvFlagEV_POLL_NOTE)
	evNoSockNote = uint16(tcpstateEvFlagEV_NOSOCK_NOTE)
	evPath       = uint16(tcpstateEvFlagEV_PATH)
)

// pathSize is sizeof(struct conn_path), which follows the event in a
// path record (struct path_record).
const pathSize = int(unsafe.Sizeof(tcpstateConnPath{}))

const commLength = len(tcpstateEvent{}.Comm)

// decoder turns raw ring buffer records into Events. It keeps a small
// cache of comm strings so that decoding allocates nothing in the steady
// state.
type decoder struct {
	// bootWall is the wall clock at monotonic time 0, in ns.
	bootWall int64
	comms    map[[commLength]int8]string
	aligned  tcpstateEvent // a copy of a record that is not 8-byte aligned
	path     Path          // the last path record's, reused
	pathRaw  tcpstateConnPath
}

const maxComms = 4096

func newDecoder(bootWall int64) *decoder {
	return &decoder{bootWall: bootWall, comms: make(map[[commLength]int8]string)}
}

// decode fills ev from one record, read as the generated struct (the BPF
// object is little-endian, as are the hosts it is built for). It checks
// the length and the values it interprets, so a record from a mismatched
// BPF object is an error, not garbage.
func (d *decoder) decode(raw []byte, ev *Event) error {
	if len(raw) < eventSize {
		return fmt.Errorf("decode event: record is %d bytes, want %d", len(raw), eventSize)
	}
	r := (*tcpstateEvent)(unsafe.Pointer(unsafe.SliceData(raw)))
	if uintptr(unsafe.Pointer(r))%unsafe.Alignof(*r) != 0 {
		d.aligned = *r
		r = &d.aligned
	}
	if ev.flags = r.Flags; r.Flags == evPollNote {
		return nil // a wake-up, nothing else in it
	}
	ev.Time = time.Unix(0, d.bootWall+int64(r.TsNs))
	// (A difference past what a Duration holds is no real time in state.)
	ev.InStateKnown = r.PrevTsNs != 0 && r.PrevTsNs <= r.TsNs && r.TsNs-r.PrevTsNs <= math.MaxInt64
	ev.InState = 0
	if ev.InStateKnown {
		ev.InState = time.Duration(r.TsNs - r.PrevTsNs)
	}
	ev.Skaddr = r.Skaddr
	ev.Cookie = r.Cookie
	ev.CgroupID = r.CgroupId
	ev.Pid = r.Pid
	ev.NetNS = r.Netns
	ev.NetNSCookie = r.NetnsCookie
	ev.LPort = r.Sport
	ev.RPort = r.Dport
	switch r.Family {
	case unix.AF_INET:
		ev.Family = tcp.IPv4
		ev.LAddr = netip.AddrFrom4([4]byte(r.Saddr[:4]))
		ev.RAddr = netip.AddrFrom4([4]byte(r.Daddr[:4]))
	case unix.AF_INET6:
		ev.Family = tcp.IPv6
		ev.LAddr = netip.AddrFrom16(r.Saddr).Unmap()
		ev.RAddr = netip.AddrFrom16(r.Daddr).Unmap()
	default:
		return fmt.Errorf("decode event: unknown address family %d", r.Family)
	}
	ev.OldState = tcp.State(r.Oldstate)
	ev.NewState = tcp.State(r.Newstate)
	if ev.OldState < tcp.Established || ev.OldState > tcp.NewSynRecv || ev.NewState < tcp.Established || ev.NewState > tcp.NewSynRecv {
		return fmt.Errorf("decode event: unknown state %d -> %d (flags %d, len %d)", r.Oldstate, r.Newstate, r.Flags, len(raw))
	}
	ev.Comm = d.comm(r.Comm)
	ev.mono = r.TsNs
	ev.flags = r.Flags
	ev.Synthesized = ev.flags&evSynth != 0
	ev.Reset = Reset(r.Reset)
	ev.TxBytes = r.TxBytes
	ev.RxBytes = r.RxBytes
	ev.SndUna = r.SndUna
	ev.SndNxt = r.SndNxt
	ev.RcvNxt = r.RcvNxt
	ev.Retrans = r.Retrans
	ev.ResetReason = ResetReason(r.ResetReason)
	ev.Error = Errno(r.Error)
	ev.Suppressed = 0
	if ev.flags&evNoSockNote != 0 {
		// No socket: no counters; the field carries the RSTs before it
		// not recorded.
		ev.Suppressed, ev.Retrans = r.Retrans, 0
	}
	ev.Path = nil
	if ev.flags&evPath != 0 {
		return d.decodePath(raw, ev)
	}
	return nil
}

// decodePath reads the path that follows the event in a path record.
func (d *decoder) decodePath(raw []byte, ev *Event) error {
	if len(raw) < eventSize+pathSize {
		return fmt.Errorf("decode path: record is %d bytes, want %d", len(raw), eventSize+pathSize)
	}
	// Copied: the path does not start 8-byte aligned in every record.
	d.pathRaw = *(*tcpstateConnPath)(unsafe.Pointer(unsafe.SliceData(raw[eventSize:])))
	r := &d.pathRaw
	n := int(r.N)
	if n < 1 || n > PathSteps {
		return fmt.Errorf("decode path: %d steps, want 1 to %d", n, PathSteps)
	}
	p := &d.path
	p.From = tcp.State(r.FirstOld)
	p.Steps = p.Steps[:0]
	for i := range n {
		st := tcp.State(r.State[i])
		if st < tcp.Established || st > tcp.NewSynRecv {
			return fmt.Errorf("decode path: unknown state %d", r.State[i])
		}
		p.Steps = append(p.Steps, PathStep{State: st, Time: time.Unix(0, d.bootWall+int64(r.Ts[i]))})
	}
	p.Orphan = ev.flags&evOrphanNote != 0
	p.Truncated = r.Truncated != 0
	p.HandshakeSeen, p.SndUna, p.RcvNxt = r.IsnKnown != 0, r.IsnSndUna, r.IsnRcvNxt
	p.FinRx, p.FinSndNxt = 0, 0
	switch r.FinDir {
	case 1:
		p.FinRx = r.FinRx
	case 2:
		p.FinSndNxt = r.FinSndNxt
	}
	ev.Path = p
	return nil
}

// comm returns the string of a NUL-padded comm, interned.
func (d *decoder) comm(c [commLength]int8) string {
	if s, ok := d.comms[c]; ok {
		return s
	}
	var b [commLength]byte
	n := 0
	for n < commLength-1 && c[n] != 0 { // the kernel keeps a NUL; never trust it
		b[n] = byte(c[n])
		n++
	}
	s := string(b[:n])
	if len(d.comms) >= maxComms {
		clear(d.comms) // bounded: a host with more names just pays again
	}
	d.comms[c] = s
	return s
}
