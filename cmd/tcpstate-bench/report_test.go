// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseEventsLost(t *testing.T) {
	tests := []struct {
		stderr       string
		events, lost int64
		ok           bool
	}{
		{"Tracing TCP state transitions. Ctrl-C to end.\n1109432 events, 0 lost\n", 1109432, 0, true},
		// The "lost" lines during the run must not be taken for the total.
		{"Tracing ...\ntcpstate: lost 12 events (ring buffer full; 12 lost in all)\n500 events, 12 lost\n", 500, 12, true},
		{"Tracing ...\n", 0, 0, false},
		{"x 5 events, 1 lost\n", 0, 0, false},
	}
	for _, tt := range tests {
		events, lost, ok := parseEventsLost(tt.stderr)
		if events != tt.events || lost != tt.lost || ok != tt.ok {
			t.Errorf("parseEventsLost(%q) = %d, %d, %v; want %d, %d, %v",
				tt.stderr, events, lost, ok, tt.events, tt.lost, tt.ok)
		}
	}
}

func TestSumPerfLost(t *testing.T) {
	stderr := "lost 3 events on CPU #0\nsomething else\nlost 40 events on CPU #1\n"
	if got := sumPerfLost(stderr); got != 43 {
		t.Errorf("sumPerfLost = %d, want 43", got)
	}
}

func TestRatio(t *testing.T) {
	ref := mean(20000, 22000)
	if ref != 21000 {
		t.Fatalf("mean = %v, want 21000", ref)
	}
	if got := ratio(10500, ref); got != 0.5 {
		t.Errorf("ratio = %v, want 0.5", got)
	}
	if got := ratio(10500, 0); got != 0 {
		t.Errorf("ratio without reference = %v, want 0", got)
	}
	if got := mean(); got != 0 {
		t.Errorf("mean() = %v, want 0", got)
	}
	if got := spread(20000, 22000); got != 2000.0/21000 {
		t.Errorf("spread = %v, want %v", got, 2000.0/21000)
	}
	if got := spread(); got != 0 {
		t.Errorf("spread() = %v, want 0", got)
	}
}

func TestCountLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	body := strings.Repeat("{}\n", 3<<20/3+7) // crosses the 1 MiB read size
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := countLines(path)
	if err != nil || n != 3<<20/3+7 {
		t.Errorf("countLines = %d, %v; want %d", n, err, 3<<20/3+7)
	}
}

func TestPrintTable(t *testing.T) {
	rep := &report{Modes: []result{
		{Mode: "baseline", ConnPerSec: 20000, Ratio: 1},
		{Mode: "json-file", ConnPerSec: 15000, Ratio: 0.75, Events: ptr(int64(100)), Lost: ptr(int64(0))},
		{Mode: "life-json", Skipped: "no life command"},
	}}
	var b strings.Builder
	if err := printTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	// Header and rows have the same width (µ counts as one column).
	if w0, w2 := len([]rune(lines[0])), len([]rune(lines[2])); w0 != w2 {
		t.Errorf("header is %d columns wide, row %d:\n%s", w0, w2, b.String())
	}
	if !strings.HasPrefix(lines[2], "json-file ") || !strings.Contains(lines[2], " 0.750 ") {
		t.Errorf("bad row %q", lines[2])
	}
	if !strings.Contains(b.String(), "note: life-json skipped: no life command") {
		t.Errorf("skipped mode not noted:\n%s", b.String())
	}
}

func TestMedianRun(t *testing.T) {
	runs := []result{{Mode: "m", Ratio: 0.9, ConnPerSec: 1}, {Mode: "m", Ratio: 0.7, ConnPerSec: 2}, {Mode: "m", Ratio: 0.95, ConnPerSec: 3}}
	r := medianRun(runs)
	if r.Ratio != 0.9 || r.ConnPerSec != 1 {
		t.Errorf("median run %+v, want the one of ratio 0.9", r)
	}
	if want := "ratios of 3 runs: 0.900 / 0.700 / 0.950 (median shown)"; len(r.Notes) != 1 || r.Notes[0] != want {
		t.Errorf("notes %q, want %q", r.Notes, want)
	}
	if r := medianRun(runs[:1]); len(r.Notes) != 0 {
		t.Errorf("one run: notes %q, want none", r.Notes)
	}
}
