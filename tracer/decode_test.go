// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/tcp"
)

// record builds a raw event the way the BPF side lays it out, through the
// generated struct so that the two cannot drift apart unnoticed.
func record(t testing.TB, e tcpstateEvent) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, &e); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func comm(s string) (c [16]int8) {
	for i := 0; i < len(s) && i < 15; i++ {
		c[i] = int8(s[i])
	}
	return c
}

func TestEventSizeMatchesBPF(t *testing.T) {
	if n := binary.Size(tcpstateEvent{}); n != eventSize {
		t.Fatalf("struct event is %d bytes, decoder expects %d", n, eventSize)
	}
}

func TestDecodeIPv4(t *testing.T) {
	d := newDecoder(1_000_000_000)
	e := tcpstateEvent{
		TsNs: 5_000, PrevTsNs: 2_000, Skaddr: 0xffff888100aa0000, CgroupId: 7,
		Pid: 1234, Netns: 4026531840, Sport: 43210, Dport: 80, Family: unix.AF_INET,
		Oldstate: uint8(tcp.SynSent), Newstate: uint8(tcp.Established), Comm: comm("curl"),
	}
	copy(e.Saddr[:], []byte{127, 0, 0, 1})
	copy(e.Daddr[:], []byte{10, 1, 2, 3})
	var ev Event
	if err := d.decode(record(t, e), &ev); err != nil {
		t.Fatal(err)
	}
	want := Event{
		Time: time.Unix(0, 1_000_005_000), Skaddr: 0xffff888100aa0000, Pid: 1234, Comm: "curl",
		Family: tcp.IPv4, LAddr: netip.MustParseAddr("127.0.0.1"), LPort: 43210,
		RAddr: netip.MustParseAddr("10.1.2.3"), RPort: 80, OldState: tcp.SynSent, NewState: tcp.Established,
		InState: 3 * time.Microsecond, InStateKnown: true, NetNS: 4026531840, CgroupID: 7,
	}
	if !ev.Time.Equal(want.Time) {
		t.Errorf("time %v, want %v", ev.Time, want.Time)
	}
	ev.Time, want.Time = time.Time{}, time.Time{}
	ev.mono = 0 // internal
	if ev != want {
		t.Errorf("decoded\n%+v\nwant\n%+v", ev, want)
	}
}

func TestDecodeIPv6UnmapsAndUnknownAge(t *testing.T) {
	d := newDecoder(0)
	e := tcpstateEvent{TsNs: 10, Family: unix.AF_INET6, Oldstate: uint8(tcp.Established), Newstate: uint8(tcp.CloseWait)}
	e.Saddr = netip.MustParseAddr("::ffff:192.0.2.1").As16()
	e.Daddr = netip.MustParseAddr("2001:db8::1").As16()
	var ev Event
	if err := d.decode(record(t, e), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.LAddr != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("laddr %s, want the tcp.IPv4 address unmapped", ev.LAddr)
	}
	if ev.RAddr != netip.MustParseAddr("2001:db8::1") || ev.Family != tcp.IPv6 {
		t.Errorf("raddr %s family %s", ev.RAddr, ev.Family)
	}
	if ev.InStateKnown {
		t.Errorf("in-state time known without a previous transition")
	}
	if ev.Comm != "" || ev.Pid != 0 {
		t.Errorf("owner %d %q, want none", ev.Pid, ev.Comm)
	}
}

func TestDecodeRejectsBadRecords(t *testing.T) {
	d := newDecoder(0)
	good := tcpstateEvent{Family: unix.AF_INET, Oldstate: 1, Newstate: 2}
	var ev Event
	if err := d.decode(record(t, good)[:eventSize-1], &ev); err == nil {
		t.Error("short record accepted")
	}
	bad := good
	bad.Family = 1
	if err := d.decode(record(t, bad), &ev); err == nil {
		t.Error("unknown family accepted")
	}
	bad = good
	bad.Newstate = 13
	if err := d.decode(record(t, bad), &ev); err == nil {
		t.Error("unknown state accepted")
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	d := newDecoder(0)
	raw := record(t, tcpstateEvent{Family: unix.AF_INET6, Oldstate: 1, Newstate: 4, Comm: comm("nginx")})
	var ev Event
	allocs := testing.AllocsPerRun(1000, func() {
		if err := d.decode(raw, &ev); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("decode allocates %.1f times per event", allocs)
	}
}

func BenchmarkDecode(b *testing.B) {
	d := newDecoder(0)
	raw := record(b, tcpstateEvent{Family: unix.AF_INET, Oldstate: 1, Newstate: 4, Comm: comm("nginx")})
	var ev Event
	b.ReportAllocs()
	for b.Loop() {
		if err := d.decode(raw, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(record(f, tcpstateEvent{Family: unix.AF_INET, Oldstate: 1, Newstate: 4, Comm: comm("a")}))
	f.Add(record(f, tcpstateEvent{Family: unix.AF_INET6, Oldstate: 12, Newstate: 7, TsNs: 5, PrevTsNs: 9}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := newDecoder(0)
		var ev Event
		if err := d.decode(raw, &ev); err != nil {
			return
		}
		// Whatever the bytes, an accepted record is one we can print.
		if ev.OldState.String() == "" || ev.NewState.String() == "" {
			t.Error("state without a name")
		}
		if ev.Family == tcp.IPv4 && (!ev.LAddr.Is4() || !ev.RAddr.Is4()) || ev.LAddr.Is4In6() || ev.RAddr.Is4In6() {
			t.Errorf("family %s with addresses %s %s", ev.Family, ev.LAddr, ev.RAddr)
		}
		if len(ev.Comm) > commLength-1 || strings.IndexByte(ev.Comm, 0) >= 0 {
			t.Errorf("comm %q: longer than the kernel allows, or with a NUL", ev.Comm)
		}
		if ev.InState < 0 || (ev.InState != 0 && !ev.InStateKnown) {
			t.Errorf("in state %v (known %v)", ev.InState, ev.InStateKnown)
		}
	})
}

// Every field of the C struct reaches the Event: a record with each field
// non-zero decodes to exactly these values.
func TestDecodeRoundTrip(t *testing.T) {
	d := newDecoder(1_000_000_000)
	e := tcpstateEvent{
		TsNs: 9_000, PrevTsNs: 4_000, Skaddr: 0xffff888100aa0000, CgroupId: 77,
		Pid: 4321, Netns: 4026531999, Sport: 40000, Dport: 443, Family: unix.AF_INET6,
		Oldstate: uint8(tcp.FinWait2), Newstate: uint8(tcp.TimeWait), Comm: comm("nginx: worker"),
		Cookie: 123456789, TxBytes: 1001, RxBytes: 2002, SndUna: 11, SndNxt: 12, RcvNxt: 13,
		Retrans: 3, Flags: evSynth, Reset: uint8(ResetSent | ResetReceived), NetnsCookie: 4242,
		ResetReason: uint8(ReasonAbortOnClose), Error: uint8(unix.ECONNRESET),
	}
	e.Saddr = netip.MustParseAddr("2001:db8::1").As16()
	e.Daddr = netip.MustParseAddr("2001:db8::2").As16()
	var ev Event
	if err := d.decode(record(t, e), &ev); err != nil {
		t.Fatal(err)
	}
	want := Event{
		Time: time.Unix(0, 1_000_009_000), Skaddr: 0xffff888100aa0000, Cookie: 123456789,
		Pid: 4321, Comm: "nginx: worker", Family: tcp.IPv6,
		LAddr: netip.MustParseAddr("2001:db8::1"), LPort: 40000,
		RAddr: netip.MustParseAddr("2001:db8::2"), RPort: 443,
		OldState: tcp.FinWait2, NewState: tcp.TimeWait, InState: 5 * time.Microsecond, InStateKnown: true,
		NetNS: 4026531999, NetNSCookie: 4242, CgroupID: 77, Synthesized: true,
		Reset: ResetSent | ResetReceived, SndUna: 11, SndNxt: 12, RcvNxt: 13,
		TxBytes: 1001, RxBytes: 2002, Retrans: 3, mono: 9_000, flags: evSynth,
		ResetReason: ReasonAbortOnClose, Error: Errno(unix.ECONNRESET),
	}
	if !ev.Time.Equal(want.Time) {
		t.Errorf("time %v, want %v", ev.Time, want.Time)
	}
	ev.Time, want.Time = time.Time{}, time.Time{}
	if ev != want {
		t.Errorf("decoded\n%+v\nwant\n%+v", ev, want)
	}
}

// A record that is not 8-byte aligned in memory decodes the same.
func TestDecodeUnaligned(t *testing.T) {
	d := newDecoder(0)
	raw := record(t, tcpstateEvent{Family: unix.AF_INET, Oldstate: 1, Newstate: 4, Pid: 99, Cookie: 7})
	buf := make([]byte, len(raw)+1)
	copy(buf[1:], raw)
	var ev Event
	if err := d.decode(buf[1:], &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Pid != 99 || ev.Cookie != 7 || ev.NewState != tcp.FinWait1 {
		t.Errorf("unaligned record decoded as %+v", ev)
	}
}

// The filter limits the flags check are those of the BPF object.
func TestLimitsMatchBPF(t *testing.T) {
	spec, err := loadTcpstate()
	if err != nil {
		t.Fatal(err)
	}
	if n := spec.Maps[tcpstateMapPids].MaxEntries; n != MaxPIDs {
		t.Errorf("MaxPIDs %d, the pids map holds %d", MaxPIDs, n)
	}
	if n := spec.Maps[tcpstateMapLaddrs].MaxEntries; n != MaxPrefixes || spec.Maps[tcpstateMapRaddrs].MaxEntries != n {
		t.Errorf("MaxPrefixes %d, the address maps hold %d", MaxPrefixes, n)
	}
	var vars tcpstateVariableSpecs
	if err := spec.Assign(&vars); err != nil {
		t.Fatal(err)
	}
	if n := vars.FilterComms.Size(); int(n) != MaxComms*commLength {
		t.Errorf("MaxComms %d, filter_comms holds %d bytes", MaxComms, n)
	}
}

// A RST to no socket carries the count of those not recorded before it in
// the field that holds retransmissions elsewhere.
func TestDecodeNoSocket(t *testing.T) {
	d := newDecoder(0)
	e := tcpstateEvent{TsNs: 1, Family: unix.AF_INET, Sport: 9, Dport: 40000, Oldstate: uint8(tcp.Close), Newstate: uint8(tcp.Close),
		Flags: evNoSockNote, Reset: uint8(ResetSent), ResetReason: uint8(ReasonNoSocket), Retrans: 57}
	var ev Event
	if err := d.decode(record(t, e), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Suppressed != 57 || ev.Retrans != 0 || ev.ResetReason.String() != "NO_SOCKET" || ev.Reset != ResetSent {
		t.Errorf("decoded %+v", ev)
	}
}

func TestReasonAndErrnoNames(t *testing.T) {
	for r, want := range map[ResetReason]string{ReasonUnknown: "unknown", ReasonAbortOnClose: "TCP_ABORT_ON_CLOSE",
		ReasonState: "TCP_STATE", ReasonNoSocket: "NO_SOCKET", 200: "OTHER"} {
		if got := r.String(); got != want {
			t.Errorf("reason %d: %q, want %q", r, got, want)
		}
	}
	for i := range numKnownReasons {
		if r := ResetReason(i); r.String() == "" || r.Words() == "" {
			t.Errorf("reason %d has no name or words", i)
		}
	}
	for e, want := range map[Errno]string{0: "", Errno(unix.ECONNREFUSED): "ECONNREFUSED", Errno(unix.ETIMEDOUT): "ETIMEDOUT",
		Errno(unix.EHOSTUNREACH): "EHOSTUNREACH", 250: "E250"} {
		if got := e.String(); got != want {
			t.Errorf("errno %d: %q, want %q", e, got, want)
		}
	}
}
