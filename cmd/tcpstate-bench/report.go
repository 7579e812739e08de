// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
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
	RefRate  float64  `json:"baseline_conn_per_s"` // mean of the baselines
	Modes    []result `json:"modes"`
}

// result is one mode. Pointers are null in JSON when not applicable.
type result struct {
	Mode        string   `json:"mode"`
	Skipped     string   `json:"skipped,omitempty"`
	Conns       int64    `json:"conns"`
	ConnPerSec  float64  `json:"conn_per_s"`
	Ratio       float64  `json:"ratio"`
	LoadErrors  int64    `json:"load_errors"`
	Events      *int64   `json:"events"`
	EvPerConn   *float64 `json:"events_per_conn"` // over warm-up and run
	Lost        *int64   `json:"lost"`
	CPUSec      *float64 `json:"cpu_s"`
	CPUUsPerEv  *float64 `json:"cpu_us_per_event"`
	MaxRSSMiB   *float64 `json:"max_rss_mib"`
	StartupMs   *float64 `json:"startup_ms"`
	StartupNote string   `json:"startup_note,omitempty"`
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

// printTable writes the results as aligned columns.
func printTable(w io.Writer, rep *report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tconn/s\tratio\tevents\tev/conn\tlost\tcpu s\tcpu µs/ev\tmaxrss MiB\tstart ms\t")
	var notes []string
	for _, r := range rep.Modes {
		if r.Skipped != "" {
			notes = append(notes, r.Mode+" skipped: "+r.Skipped)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Mode, r.ConnPerSec, r.Ratio, fmtInt(r.Events), fmtFloat(r.EvPerConn, 2),
			fmtInt(r.Lost), fmtFloat(r.CPUSec, 2), fmtFloat(r.CPUUsPerEv, 2),
			fmtFloat(r.MaxRSSMiB, 1), fmtFloat(r.StartupMs, 0))
		if r.LoadErrors > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d load errors", r.Mode, r.LoadErrors))
		}
		if r.StartupNote != "" {
			notes = append(notes, r.Mode+": "+r.StartupNote)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nbaseline (mean of first and last): %.0f conn/s; %d clients, %s per mode after %s warm-up; nproc %d, kernel %s, %s\n",
		rep.RefRate, rep.Conns, rep.Duration, rep.Warmup, rep.Nproc, rep.Kernel, rep.Date)
	for _, n := range notes {
		fmt.Fprintln(w, "note:", n)
	}
	_, err := fmt.Fprintln(w, "events, ev/conn and cpu include the warm-up; cpu also includes the tracer's start-up.")
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
