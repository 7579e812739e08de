// SPDX-License-Identifier: Apache-2.0

// Command tcpstate-bench measures what tracing costs a busy host: it runs a
// workload in a fresh network namespace, untraced and under each tracer,
// and reports its rate, events, lost events and the tracer's CPU, memory
// and start-up. Workloads: churn (loopback connect/echo/close, Go on both
// ends), http (Debian's nginx under wrk, every request a new connection
// that nginx closes), syscalls (dd, one byte per read and write: no TCP,
// what tracing costs every other process).
//
//	go run ./cmd/tcpstate-bench -tcpstate /tmp/tcpstate [-workload churn] [-duration 5s] [-conns N] [-json FILE]
//
// It must run as root. It is a benchmark, not a test.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcpstate/tcpstate/tracer"
)

// Debian's libbpf-tools.
const (
	tcpstatesPath = "/usr/sbin/tcpstates"
	tcplifePath   = "/usr/sbin/tcplife"
)

// floorEnv marks the re-executed process that attaches the floor program
// (tracer.Floor) until SIGINT.
const floorEnv = "TCPSTATE_BENCH_FLOOR"

// mode is one configuration to measure. A mode without argv is a baseline.
type mode struct {
	name   string
	argv   []string
	toFile bool  // stdout to a temporary file, else /dev/null
	header int64 // lines of the output that are not events
	libbpf bool  // libbpf-tools: no attach line, perf buffer lost lines
	// scrape is the /metrics URL of tcpstate metrics: its transitions
	// and lost counters are read there at the end of the load.
	scrape  string
	skipped string
	env     string // added to the tracer's environment
	json    bool   // tcpstate's NDJSON of transitions
	// noEvents: its lines are not transitions (tcplife: one a connection).
	noEvents bool
}

func main() {
	if _, ok := os.LookupEnv(floorEnv); ok {
		if err := floorChild(); err != nil {
			fmt.Fprintln(os.Stderr, "tcpstate-bench floor:", err)
			os.Exit(1)
		}
		return
	}
	if arg, ok := os.LookupEnv(childEnv); ok {
		if err := loadChild(arg); err != nil {
			fmt.Fprintln(os.Stderr, "tcpstate-bench load:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tcpstate-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		tcpstate = flag.String("tcpstate", "", "path of the tcpstate binary (required)")
		duration = flag.Duration("duration", 5*time.Second, "measured load per mode")
		warmup   = flag.Duration("warmup", time.Second, "load before measuring, per mode")
		conns    = flag.Int("conns", 8*runtime.NumCPU(), "concurrent client connections (8 per CPU gave the highest rate)")
		jsonOut  = flag.String("json", "", "also write the results as JSON to this file")
		only     = flag.String("modes", "", "comma-separated modes to run (default all)")
		workload = flag.String("workload", workloadChurn, "churn, http, http-keepalive or syscalls")
		repeat   = flag.Int("runs", 1, "runs of each mode; the table shows the run of the median ratio")
	)
	flag.Parse()
	if !slices.Contains([]string{workloadChurn, workloadHTTP, workloadKeepalive, workloadSyscalls}, *workload) {
		fmt.Fprintf(os.Stderr, "tcpstate-bench: invalid -workload %q: want churn, http, http-keepalive or syscalls\n", *workload)
		os.Exit(2)
	}
	if *tcpstate == "" || flag.NArg() > 0 || *conns < 1 || *duration <= 0 || *repeat < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root (to load BPF programs and create a network namespace)")
	}

	modes := []mode{
		{name: "baseline"},
		{name: "json-file", argv: []string{*tcpstate, "-o", "json"}, toFile: true, json: true},
		{name: "json-file-raw", argv: []string{*tcpstate, "-o", "json", "--raw"}, toFile: true},
		{name: "table-devnull", argv: []string{*tcpstate}},
		{name: "life-json", argv: []string{*tcpstate, "life", "-o", "json"}, toFile: true},
		{name: "metrics", argv: []string{*tcpstate, "metrics", "--listen", metricsAddr}, scrape: "http://" + metricsAddr + "/metrics"},
		// The floors: trace's and metrics' programs attached where they
		// are, each returning at once. No mode of them can do better.
		{name: "hooks-only", argv: []string{*tcpstate, "-o", "json", "--hollow"}, toFile: true},
		{name: "metrics-hooks-only", argv: []string{*tcpstate, "metrics", "--listen", metricsAddr, "--hollow"}, scrape: "http://" + metricsAddr + "/metrics"},
		{name: "ladder-devnull", argv: []string{*tcpstate, "ladder"}},
		{name: "stuck-watch", argv: []string{*tcpstate, "stuck", "--watch"}},
		// The practical floor: one program adding 1 to a per-CPU counter.
		{name: "floor-one-program", argv: []string{"/proc/self/exe"}, env: floorEnv + "=1"},
		{name: "libbpf-tools-tcpstates", argv: []string{tcpstatesPath}, toFile: true, header: 1, libbpf: true},
		{name: "libbpf-tools-tcplife", argv: []string{tcplifePath}, toFile: true, header: 1, libbpf: true, noEvents: true},
	}
	skip := func(name, why string) {
		for i := range modes {
			if modes[i].name == name {
				modes[i].skipped = why
			}
		}
	}
	if !hasLife(*tcpstate) {
		skip("life-json", "'tcpstate life --help' does not describe a life command")
	}
	if !hasCommand(*tcpstate, "metrics") {
		skip("metrics", "'tcpstate metrics --help' does not describe a metrics command")
		skip("metrics-hooks-only", "'tcpstate metrics --help' does not describe a metrics command")
	}
	if !accepts(*tcpstate, "--hollow") {
		skip("hooks-only", "tcpstate has no --hollow")
		skip("metrics-hooks-only", "tcpstate has no --hollow")
	}
	for name, path := range map[string]string{"libbpf-tools-tcpstates": tcpstatesPath, "libbpf-tools-tcplife": tcplifePath} {
		if _, err := os.Stat(path); err != nil {
			skip(name, path+" not found (apt-get install libbpf-tools)")
		}
	}

	rep := &report{
		Nproc:    runtime.NumCPU(),
		Kernel:   kernelRelease(),
		Date:     time.Now().Format(time.RFC3339),
		Duration: duration.String(),
		Warmup:   warmup.String(),
		Conns:    *conns,
		Tcpstate: *tcpstate,
		Workload: *workload,
		Unit:     unitOf(*workload),
	}
	selected := map[string]bool{}
	for _, m := range modes {
		selected[m.name] = *only == ""
	}
	if *only != "" {
		for name := range strings.SplitSeq(*only, ",") {
			if _, ok := selected[name]; !ok {
				return fmt.Errorf("unknown mode %q in -modes", name)
			}
			selected[name] = true
		}
	}
	cfg := loadConfig{Workload: *workload, Conns: *conns, Warmup: *warmup, Duration: *duration}
	// The machine's speed drifts by 10-20% within a minute, so every
	// tracer mode runs between two baselines and is compared with their mean.
	baseline := func() (float64, error) {
		fmt.Fprintln(os.Stderr, "running baseline...")
		r, err := runMode(modes[0], cfg)
		return r.ConnPerSec, err
	}
	prev, err := baseline()
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	baselines := []float64{prev}
	var traced []result
	for _, m := range modes[1:] {
		if !selected[m.name] {
			continue
		}
		r := result{Mode: m.name, Skipped: m.skipped}
		if m.skipped == "" {
			// Each run of the mode between two baselines; the run of the
			// median ratio stands for them, the others' ratios in a note.
			var runs []result
			for range *repeat {
				fmt.Fprintf(os.Stderr, "running %s...\n", m.name)
				if r, err = runMode(m, cfg); err != nil {
					return fmt.Errorf("%s: %w", m.name, err)
				}
				next, err := baseline()
				if err != nil {
					return fmt.Errorf("baseline: %w", err)
				}
				baselines = append(baselines, next)
				r.Ratio = ratio(r.ConnPerSec, mean(prev, next))
				prev = next
				runs = append(runs, r)
			}
			r = medianRun(runs)
		}
		traced = append(traced, r)
	}
	rep.RefRate, rep.RefRuns, rep.Spread = mean(baselines...), len(baselines), spread(baselines...)
	rep.Modes = append([]result{{Mode: "baseline", ConnPerSec: rep.RefRate, Ratio: 1}}, traced...)

	if err := printTable(os.Stdout, rep); err != nil {
		return err
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(*jsonOut, append(b, '\n'), 0o644)
	}
	return nil
}

// hasLife reports whether tcpstate has a life subcommand. The exit status
// alone does not tell: cobra prints the root help, successfully, for
// "--help" after an unknown subcommand.
func hasLife(tcpstate string) bool { return hasCommand(tcpstate, "life") }

// hasCommand says whether the binary has the subcommand.
func hasCommand(tcpstate, name string) bool {
	out, err := exec.Command(tcpstate, name, "--help").CombinedOutput()
	return err == nil && strings.Contains(string(out), "tcpstate "+name)
}

// accepts tells whether tcpstate takes a (perhaps hidden) flag.
func accepts(tcpstate, flag string) bool {
	return exec.Command(tcpstate, flag, "--help").Run() == nil
}

// metricsAddr is where the metrics mode serves, on loopback.
const metricsAddr = "127.0.0.1:19969"

// scrapeCounters reads the sum of tcpstate_transitions_total and
// tcpstate_events_lost_total from a metrics endpoint.
func scrapeCounters(url string) (events, lost int64, err error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("status %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, rest = line[:i], line[strings.LastIndexByte(line, '}')+2:]
		}
		v, perr := strconv.ParseFloat(strings.Fields(rest + " 0")[0], 64)
		switch {
		case perr != nil:
		case name == "tcpstate_transitions_total":
			events += int64(v)
		case name == "tcpstate_events_lost_total":
			lost += int64(v)
		}
	}
	return events, lost, sc.Err()
}

// runMode starts the mode's tracer, if any, waits until it is attached,
// runs the load and stops the tracer with SIGINT (tcpstates loses its
// buffered output with any other signal).
func runMode(m mode, cfg loadConfig) (result, error) {
	r := result{Mode: m.name}
	if m.argv == nil {
		load, err := runLoad(cfg)
		if err != nil {
			return r, err
		}
		r.setLoad(load)
		return r, nil
	}

	var out *os.File
	var err error
	if m.toFile {
		out, err = os.CreateTemp("", "tcpstate-bench-*.out")
		if err == nil {
			defer os.Remove(out.Name())
		}
	} else {
		out, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	if err != nil {
		return r, err
	}
	defer out.Close()

	cmd := exec.Command(m.argv[0], m.argv[1:]...)
	if m.env != "" {
		cmd.Env = append(os.Environ(), m.env)
	}
	cmd.Stdout = out
	stderr := &stderrWatch{attached: make(chan struct{})}
	cmd.Stderr = stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	if m.libbpf {
		// libbpf-tools print nothing until their stdio buffer fills; they
		// create their perf buffer epoll fd right after attaching.
		if !waitForFD(cmd.Process.Pid, "anon_inode:[eventpoll]", 2*time.Second) {
			r.Notes = append(r.Notes, "no sign of attaching; waited 2s")
		}
	} else {
		select {
		case <-stderr.attached:
		case err := <-exited:
			return r, fmt.Errorf("tracer exited before attaching: %v: %s", err, stderr.String())
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			return r, fmt.Errorf("tracer did not attach within 30s")
		}
	}
	r.StartupMs = ptr(float64(time.Since(start).Microseconds()) / 1e3)
	// What the start-up took of the tracer's CPU, to leave it out of the
	// CPU per event.
	startCPU := procCPU(cmd.Process.Pid)

	load, loadErr := runLoad(cfg)
	var scraped struct {
		events, lost int64
		err          error
	}
	if m.scrape != "" && loadErr == nil {
		scraped.events, scraped.lost, scraped.err = scrapeCounters(m.scrape)
	}

	cmd.Process.Signal(syscall.SIGINT)
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		waitErr = errors.Join(errors.New("killed: no exit 60s after SIGINT"), <-exited)
	}
	if loadErr != nil {
		return r, loadErr
	}
	if waitErr != nil {
		return r, fmt.Errorf("tracer: %v: %s", waitErr, stderr.String())
	}
	r.setLoad(load)

	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	r.CPUSec = &cpu
	r.MaxRSSMiB = ptr(float64(ru.Maxrss) / 1024) // ru_maxrss is in KiB

	events, lost, ok := parseEventsLost(stderr.String())
	if m.libbpf {
		lost, ok = sumPerfLost(stderr.String()), true
	}
	if m.scrape != "" {
		if scraped.err != nil {
			return r, fmt.Errorf("scrape %s: %w", m.scrape, scraped.err)
		}
		events, lost, ok = scraped.events, scraped.lost, true
	}
	if ok {
		r.Lost = &lost
	}
	if m.toFile {
		lines, err := countLines(out.Name())
		if err != nil {
			return r, err
		}
		if ok && !m.libbpf && lines-m.header != events {
			r.Notes = append(r.Notes, fmt.Sprintf("tracer counted %d events but wrote %d lines", events, lines))
		}
		events, ok = max(lines-m.header, 0), true
		if m.json && load.TimeWaits > 0 {
			// Every TIME_WAIT the kernel made in the load's namespace,
			// seen entered (the tracer sees the whole host: another
			// process's TIME_WAITs would count too).
			seen, err := countMatches(out.Name(), `"newstate":"TIME_WAIT"`)
			if err != nil {
				return r, err
			}
			r.Notes = append(r.Notes, fmt.Sprintf("TIME_WAIT entered %d times, the kernel's TcpExtTW %d", seen, load.TimeWaits))
		}
	}
	if m.noEvents {
		ok = false
	}
	if ok {
		r.Events = &events
		r.EvPerConn = ptr(float64(events) / float64(load.Total))
		if events > 0 {
			r.CPUUsPerEv = ptr(max(cpu-startCPU, 0) * 1e6 / float64(events))
		}
	}
	return r, nil
}

func (r *result) setLoad(l loadResult) {
	r.Conns = l.Conns
	r.ConnPerSec = float64(l.Conns) / l.Seconds
	r.LoadErrors = l.Errors
}

// waitForFD polls the open files of pid until one links to target.
func waitForFD(pid int, target string, timeout time.Duration) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if l, _ := os.Readlink(dir + "/" + e.Name()); l == target {
				return true
			}
		}
	}
	return false
}

// procCPU is the CPU time, in seconds, that process pid has used so far
// (utime and stime of /proc/PID/stat, in clock ticks of 1/100 s).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// attachedLine is the line tcpstate prints once attached: "Tracing ..."
// (trace, life, the floor), "Drawing ..." (ladder), "Watching ..." (stuck
// --watch),
// "Serving Prometheus metrics ..." (metrics).
var attachedLine = regexp.MustCompile(`(?m)^(Tracing|Drawing|Watching|Serving Prometheus metrics) `)

// floorChild attaches the floor program until SIGINT or SIGTERM, and says
// how many transitions it counted.
func floorChild() error {
	f, err := tracer.NewFloor()
	if err != nil {
		return err
	}
	defer f.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	fmt.Fprintln(os.Stderr, "Tracing with the floor program. Ctrl-C to end.")
	<-sig
	n, err := f.Count()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%d events, 0 lost\n", n)
	return nil
}

// stderrWatch keeps a tracer's stderr and closes attached at the first line
// that says it is tracing. exec copies into it, and Wait returns only after
// the copy is complete, so nothing at the end is lost.
type stderrWatch struct {
	mu       sync.Mutex
	buf      strings.Builder
	attached chan struct{}
	seen     bool
}

func (w *stderrWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.seen && attachedLine.MatchString(w.buf.String()) {
		w.seen = true
		close(w.attached)
	}
	return len(p), nil
}

func (w *stderrWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
