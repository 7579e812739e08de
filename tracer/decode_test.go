// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
	"unsafe"
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
		Pid: 1234, Netns: 4026531840, Sport: 43210, Dport: 80, Family: afInet,
		Oldstate: uint8(SynSent), Newstate: uint8(Established), Comm: comm("curl"),
	}
	copy(e.Saddr[:], []byte{127, 0, 0, 1})
	copy(e.Daddr[:], []byte{10, 1, 2, 3})
	var ev Event
	if err := d.decode(record(t, e), &ev); err != nil {
		t.Fatal(err)
	}
	want := Event{
		Time: time.Unix(0, 1_000_005_000), Skaddr: 0xffff888100aa0000, Pid: 1234, Comm: "curl",
		Family: IPv4, LAddr: netip.MustParseAddr("127.0.0.1"), LPort: 43210,
		RAddr: netip.MustParseAddr("10.1.2.3"), RPort: 80, OldState: SynSent, NewState: Established,
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
	e := tcpstateEvent{TsNs: 10, Family: afInet6, Oldstate: uint8(Established), Newstate: uint8(CloseWait)}
	e.Saddr = netip.MustParseAddr("::ffff:192.0.2.1").As16()
	e.Daddr = netip.MustParseAddr("2001:db8::1").As16()
	var ev Event
	if err := d.decode(record(t, e), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.LAddr != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("laddr %s, want the IPv4 address unmapped", ev.LAddr)
	}
	if ev.RAddr != netip.MustParseAddr("2001:db8::1") || ev.Family != IPv6 {
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
	good := tcpstateEvent{Family: afInet, Oldstate: 1, Newstate: 2}
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
	raw := record(t, tcpstateEvent{Family: afInet6, Oldstate: 1, Newstate: 4, Comm: comm("nginx")})
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
	raw := record(b, tcpstateEvent{Family: afInet, Oldstate: 1, Newstate: 4, Comm: comm("nginx")})
	var ev Event
	b.ReportAllocs()
	for b.Loop() {
		if err := d.decode(raw, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(record(f, tcpstateEvent{Family: afInet, Oldstate: 1, Newstate: 4, Comm: comm("a")}))
	f.Add(record(f, tcpstateEvent{Family: afInet6, Oldstate: 12, Newstate: 7}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := newDecoder(0)
		var ev Event
		if err := d.decode(raw, &ev); err != nil {
			return
		}
		if ev.OldState.String() == "" || ev.NewState.String() == "" {
			t.Error("state without a name")
		}
		if !ev.LAddr.IsValid() || ev.LAddr.Is4In6() || ev.RAddr.Is4In6() {
			t.Errorf("bad addresses %s %s", ev.LAddr, ev.RAddr)
		}
		if len(ev.Comm) > 15 {
			t.Errorf("comm %q longer than the kernel allows", ev.Comm)
		}
	})
}

// The decoder's offsets are those of the C struct, as bpf2go generated it.
func TestDecodeOffsetsMatchBPF(t *testing.T) {
	var e tcpstateEvent
	for name, c := range map[string][2]uintptr{
		"ts_ns":        {offTs, unsafe.Offsetof(e.TsNs)},
		"prev_ts_ns":   {offPrevTs, unsafe.Offsetof(e.PrevTsNs)},
		"skaddr":       {offSkaddr, unsafe.Offsetof(e.Skaddr)},
		"cgroup_id":    {offCgroup, unsafe.Offsetof(e.CgroupId)},
		"pid":          {offPid, unsafe.Offsetof(e.Pid)},
		"netns":        {offNetns, unsafe.Offsetof(e.Netns)},
		"saddr":        {offSaddr, unsafe.Offsetof(e.Saddr)},
		"daddr":        {offDaddr, unsafe.Offsetof(e.Daddr)},
		"sport":        {offSport, unsafe.Offsetof(e.Sport)},
		"dport":        {offDport, unsafe.Offsetof(e.Dport)},
		"family":       {offFamily, unsafe.Offsetof(e.Family)},
		"oldstate":     {offOld, unsafe.Offsetof(e.Oldstate)},
		"newstate":     {offNew, unsafe.Offsetof(e.Newstate)},
		"comm":         {offComm, unsafe.Offsetof(e.Comm)},
		"cookie":       {offCookie, unsafe.Offsetof(e.Cookie)},
		"tx_bytes":     {offTx, unsafe.Offsetof(e.TxBytes)},
		"rx_bytes":     {offRx, unsafe.Offsetof(e.RxBytes)},
		"snd_una":      {offSndUna, unsafe.Offsetof(e.SndUna)},
		"snd_nxt":      {offSndNxt, unsafe.Offsetof(e.SndNxt)},
		"rcv_nxt":      {offRcvNxt, unsafe.Offsetof(e.RcvNxt)},
		"retrans":      {offRetrans, unsafe.Offsetof(e.Retrans)},
		"flags":        {offFlags, unsafe.Offsetof(e.Flags)},
		"reset":        {offReset, unsafe.Offsetof(e.Reset)},
		"netns_cookie": {offNetnsCk, unsafe.Offsetof(e.NetnsCookie)},
	} {
		if c[0] != c[1] {
			t.Errorf("%s at offset %d, the BPF struct has it at %d", name, c[0], c[1])
		}
	}
	if unsafe.Sizeof(e) != eventSize {
		t.Errorf("event is %d bytes, the BPF struct %d", eventSize, unsafe.Sizeof(e))
	}
}
