// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// report is the whole run, also written with -json.
type report struct {
	Nproc    int      `json:"nproc"`
	Kernel   string   `json:"kernel"`
	Date     string   `json:"date"`
	Duration string   `json:"duration"`
	Warmup   string   `json:"warmup"`
	Conns    int      `json:"conns"`
	Tcpstate string   `json:"tcpstate"`
	Workload string   `json:"workload"`
	Unit     string   `json:"unit"`                // what conn_per_s counts: connections, requests, syscalls
	RefRate  float64  `json:"baseline_conn_per_s"` // mean of the baselines
	RefRuns  int      `json:"baseline_runs"`
	Spread   float64  `json:"baseline_spread"` // (max-min)/mean of the baselines
	Modes    []result `json:"modes"`
}

// result is one mode. Pointers are null in JSON when not applicable.
type result struct {
	Mode       string   `json:"mode"`
	Skipped    string   `json:"skipped,omitempty"`
	Conns      int64    `json:"conns"`
	ConnPerSec float64  `json:"conn_per_s"`
	Ratio      float64  `json:"ratio"`
	LoadErrors int64    `json:"load_errors"`
	Events     *int64   `json:"events"`
	EvPerConn  *float64 `json:"events_per_conn"` // over warm-up and run
	Lost       *int64   `json:"lost"`
	CPUSec     *float64 `json:"cpu_s"`
	CPUUsPerEv *float64 `json:"cpu_us_per_event"`
	MaxRSSMiB  *float64 `json:"max_rss_mib"`
	StartupMs  *float64 `json:"startup_ms"`
	Notes      []string `json:"notes,omitempty"`
}

var eventsLostRE = regexp.MustCompile(`(?m)^(\d+) events, (\d+) lost$`)

// parseEventsLost finds tcpstate's final "N events, M lost" line.
func parseEventsLost(stderr string) (events, lost int64, ok bool) {
	m := eventsLostRE.FindAllStringSubmatch(stderr, -1)
	if m == nil {
		return 0, 0, false
	}
	last := m[len(m)-1]
	e, err1 := strconv.ParseInt(last[1], 10, 64)
	l, err2 := strconv.ParseInt(last[2], 10, 64)
	return e, l, err1 == nil && err2 == nil
}

var perfLostRE = regexp.MustCompile(`(?m)^lost (\d+) events on CPU #\d+$`)

// sumPerfLost adds up libbpf-tools' "lost N events on CPU #C" lines.
func sumPerfLost(stderr string) int64 {
	var n int64
	for _, m := range perfLostRE.FindAllStringSubmatch(stderr, -1) {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		n += v
	}
	return n
}

// ratio is rate relative to ref, 0 when there is no reference.
func ratio(rate, ref float64) float64 {
	if ref <= 0 {
		return 0
	}
	return rate / ref
}

// mean of the baseline rates; the machine is noisy, so one run is not
// enough of a reference.
func mean(xs ...float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// spread is (max-min)/mean: how far apart the baseline runs were.
func spread(xs ...float64) float64 {
	m := mean(xs...)
	if m == 0 {
		return 0
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	return (hi - lo) / m
}

// countMatches counts the lines of a file that hold s.
func countMatches(path, s string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(s)) {
			n++
		}
	}
	return n, sc.Err()
}

// countLines counts newline-terminated lines in a file.
func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	r := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, 1<<20)
	for {
		k, err := r.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func ptr[T any](v T) *T { return &v }

// printTable writes the results as columns: the mode left-aligned, the
// numbers right-aligned.
func printTable(w io.Writer, rep *report) error {
	unit := map[string]string{"requests": "req", "syscalls": "syscall"}[rep.Unit]
	if unit == "" {
		unit = "conn"
	}
	rows := [][]string{{"mode", unit + "/s", "ratio", "events", "ev/" + unit, "lost", "cpu s", "cpu µs/ev", "maxrss MiB", "start ms"}}
	var notes []string
	for _, r := range rep.Modes {
		if r.Skipped != "" {
			notes = append(notes, r.Mode+" skipped: "+r.Skipped)
			continue
		}
		rows = append(rows, []string{r.Mode,
			strconv.FormatFloat(r.ConnPerSec, 'f', 0, 64), strconv.FormatFloat(r.Ratio, 'f', 3, 64),
			fmtInt(r.Events), fmtFloat(r.EvPerConn, 2), fmtInt(r.Lost), fmtFloat(r.CPUSec, 2),
			fmtFloat(r.CPUUsPerEv, 2), fmtFloat(r.MaxRSSMiB, 1), fmtFloat(r.StartupMs, 0)})
		if r.LoadErrors > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d failed connections", r.Mode, r.LoadErrors))
		}
		for _, n := range r.Notes {
			notes = append(notes, r.Mode+": "+n)
		}
	}
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range rows {
		line := fmt.Sprintf("%-*s", widths[0], row[0])
		for i, c := range row[1:] {
			line += fmt.Sprintf("  %*s", widths[i+1], c) // fmt pads by runes
		}
		fmt.Fprintln(w, line)
	}
	if rep.Spread > 0.1 {
		notes = append(notes, fmt.Sprintf("the baseline runs differ by %.0f%%: the machine is noisy, compare ratios with care", 100*rep.Spread))
	}
	fmt.Fprintf(w, "\nworkload %s; ratio: to the mean of the baselines run just before and after the mode; baseline (mean of %d runs): %.0f %s/s; %d clients, %s per mode after %s warm-up; nproc %d, kernel %s, %s\n",
		rep.Workload, rep.RefRuns, rep.RefRate, unit, rep.Conns, rep.Duration, rep.Warmup, rep.Nproc, rep.Kernel, rep.Date)
	for _, n := range notes {
		fmt.Fprintln(w, "note:", n)
	}
	_, err := fmt.Fprintln(w, "events, ev/conn and cpu include the warm-up; cpu s also includes the tracer's start-up, cpu µs/ev does not (its CPU when it said it was attached is left out).")
	return err
}

func fmtInt(p *int64) string {
	if p == nil {
		return "n/a"
	}
	return strconv.FormatInt(*p, 10)
}

func fmtFloat(p *float64, prec int) string {
	if p == nil {
		return "n/a"
	}
	return strconv.FormatFloat(*p, 'f', prec, 64)
}

// kernelRelease is uname -r.
func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
