// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var (
	t0    = time.Date(2026, 11, 25, 21, 3, 4, 123456789, time.UTC)
	india = time.FixedZone("IST", 5*3600+30*60)
)

// testEvents covers the cases that have their own formatting rules.
var testEvents = []tracer.Event{
	{ // the example from the contract
		Time: t0, Skaddr: 0xffff888100aa0000, Pid: 1234, Comm: "curl", Family: tcp.IPv4,
		LAddr: netip.MustParseAddr("127.0.0.1"), LPort: 43210,
		RAddr: netip.MustParseAddr("127.0.0.1"), RPort: 80,
		OldState: tcp.SynSent, NewState: tcp.Established,
		InState: 152 * time.Microsecond, InStateKnown: true, NetNS: 4026531840, CgroupID: 1,
	},
	{ // IPv6, non-UTC zone
		Time: time.Date(2026, 11, 26, 2, 33, 4, 5000000, india), Skaddr: 0xffff888100bb1200, Pid: 42, Comm: "nginx", Family: tcp.IPv6,
		LAddr: netip.MustParseAddr("::1"), LPort: 8080,
		RAddr: netip.MustParseAddr("fe80::1"), RPort: 54321,
		OldState: tcp.SynRecv, NewState: tcp.Established,
		InState: 12345678 * time.Nanosecond, InStateKnown: true, NetNS: 4026532000, CgroupID: 7,
	},
	{ // IPv6 socket talking IPv4, address already unmapped by the tracer
		Time: t0.Add(time.Second), Skaddr: 0xffff888100cc0000, Pid: 777, Comm: "java", Family: tcp.IPv6,
		LAddr: netip.MustParseAddr("::ffff:10.0.0.1").Unmap(), LPort: 443,
		RAddr: netip.MustParseAddr("::ffff:10.0.0.2").Unmap(), RPort: 50000,
		OldState: tcp.Established, NewState: tcp.CloseWait,
		InState: 3 * time.Second, InStateKnown: true, NetNS: 4026531840, CgroupID: 2,
	},
	{ // nobody owns it: pid 0, empty comm
		Time: t0.Add(61 * time.Second), Skaddr: 0xffff888100cc0000, Family: tcp.IPv4,
		LAddr: netip.MustParseAddr("10.0.0.1"), LPort: 443,
		RAddr: netip.MustParseAddr("10.0.0.2"), RPort: 50000,
		OldState: tcp.TimeWait, NewState: tcp.Close,
		InState: 60 * time.Second, InStateKnown: true, NetNS: 4026531840,
	},
	{ // comm needing escaping, unknown InState
		Time: t0.Add(2 * time.Second), Skaddr: 0xffff888100dd0000, Pid: 99, Comm: `a"b\`, Family: tcp.IPv4,
		LAddr: netip.MustParseAddr("0.0.0.0"), LPort: 22,
		RAddr: netip.MustParseAddr("0.0.0.0"), RPort: 0,
		OldState: tcp.Close, NewState: tcp.Listen,
		NetNS: 4026531840, CgroupID: 3,
	},
	{ // hostile comm: control characters, invalid UTF-8, over 15 characters
		Time: t0.Add(3 * time.Second), Skaddr: 0xffff888100ee0000, Pid: 100, Comm: "x\x1b[31m\ty\xffcafé-long-name", Family: tcp.IPv4,
		LAddr: netip.MustParseAddr("192.168.100.200"), LPort: 65535,
		RAddr: netip.MustParseAddr("255.255.255.255"), RPort: 65535,
		OldState: tcp.FinWait1, NewState: tcp.FinWait2,
		InState: 999, InStateKnown: true, NetNS: 1, CgroupID: 4,
	},
	{ // everything at its largest
		Time: t0.Add(4 * time.Second), Skaddr: ^uint64(0), Pid: ^uint32(0), Comm: "123456789012345", Family: tcp.IPv6,
		LAddr: netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), LPort: 65535,
		RAddr: netip.MustParseAddr("fe80::1%eth0"), RPort: 65535,
		OldState: tcp.NewSynRecv, NewState: tcp.Established,
		InState: 3 * time.Hour, InStateKnown: true, NetNS: ^uint32(0), CgroupID: ^uint64(0),
	},
	{ // states the kernel may add, invalid addresses, InState of 0
		Time: t0.Add(5 * time.Second), Skaddr: 0x1000, Pid: 1, Comm: "init", Family: tcp.Family(0),
		OldState: tcp.State(0), NewState: tcp.State(200),
		InStateKnown: true,
	},
}

func render(t testing.TB, f Format) []byte {
	t.Helper()
	var buf bytes.Buffer
	p := NewPrinter(&buf, f)
	for i := range testEvents {
		if err := p.Print(&testEvents[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	for _, name := range []string{"table", "json"} {
		t.Run(name, func(t *testing.T) {
			f, err := NewWith(name, Options{})
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, name, render(t, f))
		})
	}
}

var jsonKeys = []string{"time", "skaddr", "pid", "comm", "family", "laddr", "lport", "raddr", "rport",
	"oldstate", "newstate", "in_state_us", "netns", "cgroup_id"}

func TestJSONLines(t *testing.T) {
	f := newJSON(Options{})
	if h := f.Header(); h != nil {
		t.Errorf("JSON header = %q, want nil", h)
	}
	for i := range testEvents {
		ev := &testEvents[i]
		line := f.Append(nil, ev)
		if !bytes.HasSuffix(line, []byte("}\n")) || bytes.Count(line, []byte("\n")) != 1 {
			t.Fatalf("event %d: not one line: %q", i, line)
		}

		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("event %d: %v: %s", i, err, line)
		}
		want := jsonKeys
		if !ev.InStateKnown {
			want = nil
			for _, k := range jsonKeys {
				if k != "in_state_us" {
					want = append(want, k)
				}
			}
		}
		if got := keyOrder(t, line); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("event %d: keys %v, want %v", i, got, want)
		}

		tm, err := time.Parse(time.RFC3339Nano, m["time"].(string))
		if err != nil || !tm.Equal(ev.Time) {
			t.Errorf("event %d: time %v (%v), want %v", i, m["time"], err, ev.Time)
		}
		_, gotOff := tm.Zone()
		if _, wantOff := ev.Time.Zone(); gotOff != wantOff {
			t.Errorf("event %d: zone offset %d, want %d", i, gotOff, wantOff)
		}
		if utf8.ValidString(ev.Comm) && m["comm"] != ev.Comm {
			t.Errorf("event %d: comm %q, want %q", i, m["comm"], ev.Comm)
		}
		if got := m["pid"].(float64); got != float64(ev.Pid) {
			t.Errorf("event %d: pid %v, want %d", i, got, ev.Pid)
		}
		if got := m["oldstate"]; got != ev.OldState.String() {
			t.Errorf("event %d: oldstate %v, want %v", i, got, ev.OldState)
		}
		if got, ok := m["in_state_us"].(float64); ev.InStateKnown && got != float64(ev.InState/time.Microsecond) || !ev.InStateKnown && ok {
			t.Errorf("event %d: in_state_us %v, known %v", i, m["in_state_us"], ev.InStateKnown)
		}
	}
}

// keyOrder returns the top-level keys of a flat JSON object in order.
func keyOrder(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("want object, got %v %v", tok, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		if _, err := dec.Token(); err != nil { // scalar value
			t.Fatal(err)
		}
	}
	return keys
}

func TestAppendState(t *testing.T) {
	for s := 0; s < 256; s++ {
		if got, want := string(appendState(nil, tcp.State(s))), tcp.State(s).String(); got != want {
			t.Errorf("appendState(%d) = %q, want %q", s, got, want)
		}
	}
}

func TestTableLines(t *testing.T) {
	out := render(t, newTable(Options{}))
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(testEvents)+1 {
		t.Fatalf("%d lines, want header + %d", len(lines), len(testEvents))
	}
	if !strings.HasPrefix(lines[0], "TIME ") || strings.Count(string(out), lines[0]) != 1 {
		t.Errorf("bad header %q", lines[0])
	}
	for i, l := range lines {
		if strings.TrimRight(l, " ") != l {
			t.Errorf("line %d has trailing spaces: %q", i, l)
		}
		if strings.ContainsAny(l, "\x1b\t") {
			t.Errorf("line %d has control characters: %q", i, l)
		}
	}
	// IPv4 lines, with every field at its widest, must fit 120 columns
	// and keep the columns aligned with the header.
	ev := testEvents[5]
	ev.Pid = 4194304 // pid_max
	ev.Comm = "123456789012345"
	ev.OldState, ev.NewState = tcp.NewSynRecv, tcp.Established
	ev.InState = 9999999 * time.Microsecond
	l := string(newTable(Options{}).Append(nil, &ev))
	if n := utf8.RuneCountInString(l) - 1; n > 120 {
		t.Errorf("widest IPv4 line is %d columns: %q", n, l)
	}
	if len(l) != len(lines[0])+1 {
		t.Errorf("line and header widths differ:\n%s%s", lines[0]+"\n", l)
	}
	if want := "NEW_SYN_RECV -> ESTABLISHED 9999.999\n"; !strings.HasSuffix(l, want) {
		t.Errorf("line %q does not end with %q", l, want)
	}
}

func TestNew(t *testing.T) {
	for _, name := range []string{"table", "json"} {
		if f, err := NewWith(name, Options{}); err != nil || f == nil {
			t.Errorf("NewWith(%q) = %v, %v", name, f, err)
		}
	}
	_, err := NewWith("xml", Options{})
	if err == nil || err.Error() != `unknown output format "xml" (want table or json)` {
		t.Errorf("NewWith(xml) error = %v", err)
	}
}

func TestPrinter(t *testing.T) {
	var buf bytes.Buffer
	p := NewPrinter(&buf, newTable(Options{}))
	if err := p.Flush(); err != nil || buf.Len() != 0 {
		t.Fatalf("Flush before any event wrote %q, %v", buf.String(), err)
	}
	for i := 0; i < 3; i++ {
		if err := p.Print(&testEvents[0]); err != nil {
			t.Fatal(err)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %d bytes before Flush", buf.Len())
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := p.Records(); got != 3 {
		t.Errorf("Records() = %d, want 3", got)
	}
	if n := strings.Count(buf.String(), string(newTable(Options{}).Header())); n != 1 {
		t.Errorf("header printed %d times", n)
	}
	if n := strings.Count(buf.String(), "\n"); n != 4 {
		t.Errorf("%d lines, want 4", n)
	}

	// Write errors are reported, and once the buffer has failed no more
	// events are counted.
	p = NewPrinter(failWriter{}, newJSON(Options{}))
	if err := p.Print(&testEvents[0]); err != nil {
		t.Fatal(err) // still buffered
	}
	if err := p.Flush(); err == nil {
		t.Error("Flush to a failing writer succeeded")
	}
	if err := p.Print(&testEvents[0]); err == nil {
		t.Error("Print after a failed Flush succeeded")
	}
	if got := p.Records(); got != 1 {
		t.Errorf("Records() = %d, want 1", got)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestZeroAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation allocates")
	}
	for _, f := range []Format{newJSON(Options{}), newTable(Options{})} {
		buf := make([]byte, 0, 1024)
		for i := range testEvents {
			ev := &testEvents[i]
			if n := testing.AllocsPerRun(100, func() { buf = f.Append(buf[:0], ev) }); n != 0 {
				t.Errorf("%T.Append(event %d): %v allocs, want 0", f, i, n)
			}
		}
		p := NewPrinter(io.Discard, f)
		if n := testing.AllocsPerRun(1000, func() { _ = p.Print(&testEvents[1]) }); n != 0 {
			t.Errorf("Printer.Print with %T: %v allocs, want 0", f, n)
		}
	}
}

// benchmark prints a stream like a busy host's: the fixture events in turn,
// a few microseconds apart.
func benchmark(b *testing.B, f Format) {
	p := NewPrinter(io.Discard, f)
	start := time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC)
	var ev tracer.Event
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev = testEvents[i%len(testEvents)]
		ev.Time = start.Add(time.Duration(i) * 7 * time.Microsecond)
		if err := p.Print(&ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSON(b *testing.B)  { benchmark(b, newJSON(Options{})) }
func BenchmarkTable(b *testing.B) { benchmark(b, newTable(Options{})) }

func FuzzJSONComm(f *testing.F) {
	for _, s := range []string{"", "curl", `a"b\`, "\x00\x1f\x7f", "café", "\xff\xfe", "\u2028<>&", "\xe2\x82"} {
		f.Add([]byte(s))
	}
	format := newJSON(Options{})
	f.Fuzz(func(t *testing.T, comm []byte) {
		ev := testEvents[0]
		ev.Comm = string(comm)
		line := format.Append(nil, &ev)
		if !json.Valid(line) || !utf8.Valid(line) {
			t.Fatalf("invalid JSON for comm %q: %s", comm, line)
		}
		var m struct{ Comm string }
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		if utf8.Valid(comm) && m.Comm != string(comm) {
			t.Fatalf("comm %q came back as %q", comm, m.Comm)
		}
	})
}

func TestAppendHex(t *testing.T) {
	for _, v := range []uint64{0, 1, 0xf, 0x10, 0xffff888100aa0000, ^uint64(0)} {
		if got, want := string(appendHex([]byte("x"), v)), "x"+strconv.FormatUint(v, 16); got != want {
			t.Errorf("appendHex(%#x) = %q, want %q", v, got, want)
		}
	}
}

// BenchmarkJSONHost prints what a busy host sends: one namespace and
// cgroup, a few processes, loopback connections.
func BenchmarkJSONHost(b *testing.B) {
	p := NewPrinter(io.Discard, newJSON(Options{}))
	ev := testEvents[0]
	start := ev.Time
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev.Time = start.Add(time.Duration(i) * 3 * time.Microsecond)
		ev.Pid = uint32(1000 + i%3)
		ev.LPort = uint16(30000 + i%20000)
		ev.Skaddr += 0x800
		if err := p.Print(&ev); err != nil {
			b.Fatal(err)
		}
	}
}

// TestClockDigits: every number of fractional digits, against time.Format.
func TestClockDigits(t *testing.T) {
	for digits := 1; digits <= 9; digits++ {
		c := clock{layout: "15:04:05", digits: digits}
		for _, ns := range []int{0, 5, 123456789, 999999999, 100000000, 90} {
			tm := time.Date(2026, 11, 25, 21, 3, 4, ns, time.UTC)
			want := tm.Format("15:04:05." + strings.Repeat("0", digits))
			if got := string(c.append(nil, tm)); got != want {
				t.Errorf("%d digits, %d ns: got %q, want %q", digits, ns, got, want)
			}
		}
	}
}
