// SPDX-License-Identifier: Apache-2.0

package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tcpstate/tcpstate/output"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

const stuckExamples = `  # Sockets stuck for over 30 s in CLOSE_WAIT, FIN_WAIT1/2, LAST_ACK, CLOSING,
  # SYN_SENT or SYN_RECV, with the processes holding them
  sudo tcpstate stuck

  # CLOSE_WAIT for over 5 minutes on port 8080; exit status 1 if any (cron)
  sudo tcpstate stuck --state close-wait --for 5m --lport 8080 --exit-code

  # Keep watching: report each socket the moment it has been stuck for 10 s,
  # and when it finally leaves the state
  sudo tcpstate stuck --watch --for 10s

  # For scripts: which processes hold stuck sockets
  sudo tcpstate stuck -o json | jq -r '.owners[] | "\(.pid) \(.comm)"' | sort | uniq -c`

// defaultStuckStates are the states a socket should pass through quickly.
var defaultStuckStates = []tcp.State{
	tcp.CloseWait, tcp.FinWait1, tcp.FinWait2, tcp.LastAck,
	tcp.Closing, tcp.SynSent, tcp.SynRecv,
}

type stuckFlags struct {
	filterFlags
	output    string
	threshold time.Duration
	watch     bool
	exitCode  bool
	duration  time.Duration
	kernelBTF string
}

func newStuckCmd(stdout, stderr io.Writer) *cobra.Command {
	var f stuckFlags
	cmd := &cobra.Command{
		Use:   "stuck",
		Short: "List sockets that have lingered in a closing or connecting state",
		Long: `List the TCP sockets that have been in CLOSE_WAIT, FIN_WAIT1, FIN_WAIT2,
LAST_ACK, CLOSING, SYN_SENT or SYN_RECV for longer than --for (30s), in every
network namespace, with the processes holding them (PID/COMM:FD, every holder
of a shared socket, found in /proc/PID/fd as ss -p does), the queues as ss
shows them, the pending timer and one line saying why. TIME_WAIT is normal
and listed only when named in --state.

AGE is exact when tcpstate saw the transition (--watch). Otherwise it is a
lower bound, marked '>=' (age_estimated in JSON), from the kernel's own
timestamps and timers on the socket:
  CLOSE_WAIT, FIN_WAIT2, CLOSING  tcpi_last_ack_recv: the segment that moved
                                  the socket into the state was an ACK
  FIN_WAIT2 after close()         tcp_fin_timeout minus the time left
  TIME_WAIT                       60 s minus the time left
  SYN_SENT, SYN_RECV              from the SYN (SYN-ACK) retransmissions so
                                  far, the timeout and the time left
  FIN_WAIT1, LAST_ACK             the same, once the timeout has backed off:
                                  how long our oldest unacknowledged segment
                                  (the FIN, or data before it) has waited
ACKs received in the state (answers to keepalive probes, ACKs of data still
sent) make the CLOSE_WAIT, FIN_WAIT2 and CLOSING bound smaller; their age is
also at most the time since the last data received (sent, for FIN_WAIT2):
age_max_us in JSON. Sockets that may have crossed --for by that upper bound
but not by the lower one are not listed, only counted on stderr; nor are
sockets whose age cannot be bounded (FIN_WAIT1 or LAST_ACK before their
first retransmission timeout).

--watch keeps a tracer attached: sockets already stuck are listed at once,
then each socket is reported ("stuck") the moment it crosses --for, and again
("left") when it leaves the state.

It needs root: CAP_SYS_PTRACE to read which processes hold each socket
(/proc/PID/fd), CAP_SYS_ADMIN to read other network namespaces, and with
--watch those of 'tcpstate trace'.

Exit status: 0, or 1 with --exit-code when stuck sockets were found.`,
		Example:      stuckExamples,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStuck(cmd.Context(), &f, stdout, stderr)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table or json (one object per line)")
	fs.DurationVar(&f.threshold, "for", 30*time.Second, "report sockets in the state for at least this long")
	fs.BoolVarP(&f.watch, "watch", "w", false, "keep watching (with a tracer) and report sockets as they get stuck and when they leave")
	fs.BoolVar(&f.exitCode, "exit-code", false, "exit with status 1 when stuck sockets were found")
	fs.DurationVarP(&f.duration, "duration", "d", 0, "with --watch: stop after this long (default: until Ctrl-C)")
	fs.StringVar(&f.kernelBTF, "kernel-btf", "", "with --watch: BTF file for this kernel, when /sys/kernel/btf/vmlinux is missing")
	f.register(fs)
	holderUsage(fs)
	stateUsage(fs, "only these states (default CLOSE_WAIT,FIN_WAIT1,FIN_WAIT2,LAST_ACK,CLOSING,SYN_SENT,SYN_RECV; add TIME_WAIT to see it)")
	fs.SortFlags = false
	return cmd
}

// errStuckFound is the exit status 1 of --exit-code.
type errStuckFound int

func (n errStuckFound) Error() string {
	if n == 1 {
		return "1 stuck socket found"
	}
	return fmt.Sprintf("%d stuck sockets found", int(n))
}

func (f *stuckFlags) validate() (snapshot.Options, error) {
	if f.output != "table" && f.output != "json" {
		return snapshot.Options{}, usagef("invalid --output %q: want table or json", f.output)
	}
	if f.threshold < 0 {
		return snapshot.Options{}, usagef("invalid --for %s: must not be negative", f.threshold)
	}
	if f.duration < 0 {
		return snapshot.Options{}, usagef("invalid --duration %s: must be positive", f.duration)
	}
	if f.duration > 0 && !f.watch {
		return snapshot.Options{}, usagef("invalid --duration: only with --watch")
	}
	if f.kernelBTF != "" {
		if !f.watch {
			return snapshot.Options{}, usagef("invalid --kernel-btf: only with --watch")
		}
		if err := checkKernelBTF(f.kernelBTF); err != nil {
			return snapshot.Options{}, err
		}
	}
	o, err := snapshotOptions(&f.filterFlags)
	if err != nil {
		return o, err
	}
	if len(o.States) == 0 {
		o.States = slices.Clone(defaultStuckStates)
	}
	slices.Sort(o.States)
	o.States = slices.Compact(o.States)
	return o, nil
}

func runStuck(ctx context.Context, f *stuckFlags, stdout, stderr io.Writer) error {
	opts, err := f.validate()
	if err != nil {
		return err
	}
	if err := checkSnapshotPrivileges("stuck"); err != nil {
		return err
	}
	w, err := output.NewStuckWriter(outputWriter{stdout}, f.output, f.watch)
	if err != nil {
		return usagef("invalid --output %q: want table or json", f.output)
	}
	if err := checkOutput(stdout); err != nil {
		return err
	}
	var found int
	if f.watch {
		found, err = watchStuck(ctx, f, opts, w, stdout, stderr)
	} else {
		found, err = listStuck(opts, f.threshold, w, stderr)
	}
	if isReaderGone(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if f.exitCode && found > 0 {
		return errStuckFound(found)
	}
	return nil
}

// listStuck prints the sockets of one snapshot that have been in their
// state for at least threshold, oldest first.
func listStuck(opts snapshot.Options, threshold time.Duration, w *output.StuckWriter, stderr io.Writer) (int, error) {
	var socks []snapshot.Socket
	var maybe maybeStuck
	err := snapshot.Snapshot(opts, func(s *snapshot.Socket) error {
		if s.AgeKnown && s.Age >= threshold {
			c := *s
			socks = append(socks, c)
		} else {
			maybe.add(s, threshold)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	defer maybe.say(stderr, threshold)
	if len(opts.PIDs) == 0 && len(opts.Comms) == 0 { // else the snapshot found them
		if err := snapshot.FillOwners(socks); err != nil {
			return 0, err
		}
	}
	slices.SortStableFunc(socks, func(a, b snapshot.Socket) int { return cmp.Compare(b.Age, a.Age) })
	if err := w.Begin(); err != nil {
		return 0, err
	}
	for i := range socks {
		s := &socks[i]
		if err := w.Write(&output.StuckRow{Time: s.Seen, Sock: s, Age: s.Age, AgeEstimated: true}); err != nil {
			return 0, err
		}
	}
	return len(socks), w.Flush()
}

// maybeStuck counts the sockets that may have been stuck for the
// threshold: their age is known to be below and above it.
type maybeStuck struct {
	n        int
	states   map[tcp.State]bool
	min, max time.Duration
}

func (m *maybeStuck) add(s *snapshot.Socket, threshold time.Duration) {
	if !s.AgeKnown || s.Age >= threshold || !s.AgeMaxKnown || s.AgeMax < threshold {
		return
	}
	if m.n == 0 {
		m.states, m.min, m.max = map[tcp.State]bool{}, s.Age, s.AgeMax
	}
	m.n++
	m.states[s.State] = true
	m.min, m.max = min(m.min, s.Age), max(m.max, s.AgeMax)
}

// say tells about them on stderr: they are not listed, but a person
// should know they may be there.
func (m *maybeStuck) say(stderr io.Writer, threshold time.Duration) {
	if m.n == 0 {
		return
	}
	var names []string
	for _, s := range tcp.States() {
		if m.states[s] {
			names = append(names, s.String())
		}
	}
	what := "sockets"
	if m.n == 1 {
		what = "socket"
	}
	fmt.Fprintf(stderr, "tcpstate: %d more %s (%s) may have been in their state for over %s: "+
		"it began between %s and %s ago, and ACKs received since (answers to keepalive probes, say) hide when; "+
		"'tcpstate stuck --watch' times them exactly\n",
		m.n, what, strings.Join(names, ", "), threshold, output.AppendAge(nil, m.min), output.AppendAge(nil, m.max))
}

// refreshInterval is how often --watch takes a snapshot, to see what the
// tracer cannot: request sockets, TIME_WAIT and FIN_WAIT2 stubs coming and
// going.
const refreshInterval = time.Second

func watchStuck(ctx context.Context, f *stuckFlags, opts snapshot.Options, w *output.StuckWriter, stdout, stderr io.Writer) (int, error) {
	ctx, stop := signal.NotifyContext(ctx, stopSignals...)
	defer stop()
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	sw := newStuckWatch(opts, f.threshold, w, stdout)
	// The tracer also follows the states a TIME_WAIT socket comes from,
	// to know exactly when it entered TIME_WAIT.
	topts := tracerOptions(opts)
	topts.States = slices.Clone(opts.States)
	if sw.states[tcp.TimeWait] {
		topts.States = append(topts.States, tcp.FinWait1, tcp.FinWait2, tcp.Closing)
	}
	topts.KernelBTF = f.kernelBTF
	t, err := newTracer(&topts, opts.NetNSPath)
	if err != nil {
		return 0, err
	}
	defer t.Close()

	// Attached first, so that nothing happens unseen between the two.
	refresh := opts
	refresh.PIDs, refresh.Comms, refresh.CgroupID, refresh.Owners = nil, nil, 0, false
	sw.strict = len(opts.PIDs) > 0 || len(opts.Comms) > 0 || opts.CgroupID != 0
	snap, err := snapshot.NewSnapshotter(refresh)
	if err != nil {
		return 0, err
	}
	defer snap.Close()
	sw.snapshot = func(states []tcp.State, visit func(*snapshot.Socket) error) error {
		snap.SetStates(states)
		return snap.Snapshot(visit)
	}
	if err := sw.start(func(visit func(*snapshot.Socket) error) error {
		return snapshot.Snapshot(opts, visit)
	}); err != nil {
		return 0, err
	}
	names := make([]string, len(opts.States))
	for i, s := range opts.States {
		names[i] = s.String()
	}
	fmt.Fprintf(stderr, "Watching for TCP sockets in %s for over %s. Ctrl-C to end.\n", strings.Join(names, ", "), f.threshold)
	if err := sw.Tick(); err != nil {
		return sw.found, err
	}
	err = t.Run(ctx, sw)
	if err == nil {
		err = w.Flush()
	}
	return sw.found, err
}

// sockKey identifies a socket across the tracer's events and snapshots.
type sockKey struct {
	netns        uint32
	family       tcp.Family
	laddr, raddr netip.Addr
	lport, rport uint16
}

func eventKey(ev *tracer.Event) sockKey {
	return sockKey{ev.NetNS, ev.Family, ev.LAddr, ev.RAddr, ev.LPort, ev.RPort}
}

func socketKey(s *snapshot.Socket) sockKey {
	return sockKey{s.NetNS, s.Family, s.LAddr, s.RAddr, s.LPort, s.RPort}
}

// watchEntry is a socket in a watched state.
type watchEntry struct {
	key    sockKey
	skaddr uint64 // 0 while known only from snapshots
	state  tcp.State
	since  time.Time // when it entered the state, or a lower bound
	exact  bool      // since is the transition's time, seen by the tracer
	// reported: printed as stuck (and so to be printed when it leaves)
	reported bool
	sock     snapshot.Socket // details from the latest snapshot
	haveSock bool
	// closing: the tracer saw the socket go to CLOSE from a state that
	// may leave a TIME_WAIT or FIN_WAIT2 stub behind; the next snapshot
	// tells which.
	closing  bool
	closedAt time.Time
	missed   int // snapshots in a row that did not list it
}

type stuckWatch struct {
	opts      snapshot.Options
	states    map[tcp.State]bool
	threshold time.Duration
	w         *output.StuckWriter
	stdout    io.Writer
	// The outside world, replaced by tests: a snapshot of the sockets in
	// these states (with the filters but those on owners and cgroup),
	// the owners of sockets, the clock.
	snapshot func(states []tcp.State, visit func(*snapshot.Socket) error) error
	owners   func([]snapshot.Socket) error
	now      func() time.Time
	// strict: filters on owners or cgroup, which a snapshot cannot check
	// for sockets whose owner has closed them; after the start only the
	// tracer (which filters in the kernel) adds sockets.
	strict      bool
	bySk        map[uint64]*watchEntry
	byKey       map[sockKey]*watchEntry
	lastRefresh time.Time
	found       int
}

func newStuckWatch(opts snapshot.Options, threshold time.Duration, w *output.StuckWriter, stdout io.Writer) *stuckWatch {
	sw := &stuckWatch{opts: opts, threshold: threshold, w: w, stdout: stdout,
		owners: snapshot.FillOwners, now: time.Now,
		states: map[tcp.State]bool{}, bySk: map[uint64]*watchEntry{}, byKey: map[sockKey]*watchEntry{}}
	for _, s := range opts.States {
		sw.states[s] = true
	}
	return sw
}

// start loads the sockets already in a watched state from a snapshot
// with all the filters.
func (sw *stuckWatch) start(take func(visit func(*snapshot.Socket) error) error) error {
	err := take(func(s *snapshot.Socket) error {
		_, err := sw.fromSnapshot(s, s.Seen, true)
		return err
	})
	sw.lastRefresh = sw.now()
	return err
}

// insert adds e, replacing (as gone) what was known of its 4-tuple.
func (sw *stuckWatch) insert(e *watchEntry) error {
	if old := sw.byKey[e.key]; old != nil && old != e {
		at := e.since
		if old.closing {
			at = old.closedAt
		}
		if err := sw.left(old, at, "gone"); err != nil {
			return err
		}
	}
	sw.byKey[e.key] = e
	if e.skaddr != 0 {
		sw.bySk[e.skaddr] = e
	}
	return nil
}

func (sw *stuckWatch) remove(e *watchEntry) {
	if sw.byKey[e.key] == e {
		delete(sw.byKey, e.key)
	}
	if e.skaddr != 0 && sw.bySk[e.skaddr] == e {
		delete(sw.bySk, e.skaddr)
	}
}

// left forgets e, printing it if it was reported stuck.
func (sw *stuckWatch) left(e *watchEntry, at time.Time, how string) error {
	sw.remove(e)
	if !e.reported || !e.haveSock {
		return nil
	}
	if at.Before(e.since) {
		at = e.since
	}
	return sw.w.Write(&output.StuckRow{Time: at, Event: "left", Sock: &e.sock, Age: at.Sub(e.since),
		AgeEstimated: !e.exact, Why: "left " + e.state.String() + ": " + how})
}

// mayLinger says whether going to CLOSE from s may leave a TIME_WAIT or
// FIN_WAIT2 stub, which the kernel's tracepoint does not report: a
// snapshot, or a tracer event synthesized for TIME_WAIT, tells.
func mayLinger(s tcp.State) bool {
	return s == tcp.FinWait1 || s == tcp.FinWait2 || s == tcp.Closing
}

// Event follows one transition of the tracer.
func (sw *stuckWatch) Event(ev *tracer.Event) error {
	key := eventKey(ev)
	// A socket gone to CLOSE from FIN_WAIT1/2 or CLOSING: the next event
	// of its 4-tuple says what it left behind (tracers that follow
	// TIME_WAIT report it), without waiting for a snapshot.
	if k := sw.byKey[key]; k != nil && k.closing && !ev.Time.Before(k.closedAt) {
		how := "closed"
		if ev.NewState == tcp.TimeWait {
			how = "now TIME_WAIT"
		}
		if err := sw.left(k, k.closedAt, how); err != nil {
			return err
		}
	}
	e := sw.bySk[ev.Skaddr]
	if e != nil && e.state != ev.OldState && e.state != ev.NewState && (e.exact || ev.Time.Before(e.since)) {
		return nil // out of order, or older than what is known of the socket
	}
	if e == nil {
		// A socket known from a snapshot, seen by the tracer for the first time.
		if k := sw.byKey[key]; k != nil && k.skaddr == 0 && !k.closing {
			if k.state == ev.OldState || k.state == ev.NewState {
				e = k
				e.skaddr = ev.Skaddr
				sw.bySk[ev.Skaddr] = e
			} else if err := sw.left(k, ev.Time, "gone"); err != nil {
				return err
			}
		}
	}
	if e != nil && !e.closing {
		if e.state == ev.NewState {
			if !e.exact && ev.Time.Before(e.since) {
				e.since, e.exact = ev.Time, true
			}
			return nil
		}
		if ev.NewState == tcp.Close && mayLinger(ev.OldState) {
			sw.pending(e, ev.Time)
		} else if err := sw.left(e, ev.Time, "now "+ev.NewState.String()); err != nil {
			return err
		}
	} else if e == nil && ev.NewState == tcp.Close && mayLinger(ev.OldState) && sw.states[tcp.TimeWait] && sw.byKey[key] == nil {
		// Not watched in its old state, but it may enter TIME_WAIT now.
		p := &watchEntry{key: key, state: ev.OldState}
		if err := sw.insert(p); err != nil {
			return err
		}
		sw.pending(p, ev.Time)
	}
	if sw.states[ev.NewState] && ev.NewState != tcp.Close {
		return sw.insert(&watchEntry{key: key, skaddr: ev.Skaddr, state: ev.NewState, since: ev.Time, exact: true})
	}
	return nil
}

// pending marks e as gone to CLOSE, leaving perhaps a stub.
func (sw *stuckWatch) pending(e *watchEntry, at time.Time) {
	if e.skaddr != 0 && sw.bySk[e.skaddr] == e {
		delete(sw.bySk, e.skaddr)
	}
	e.skaddr = 0
	e.closing, e.closedAt = true, at
}

// fromSnapshot matches one socket of a snapshot taken at start with what
// is known. initial: the first snapshot, with every filter applied.
func (sw *stuckWatch) fromSnapshot(s *snapshot.Socket, start time.Time, initial bool) (*watchEntry, error) {
	key := socketKey(s)
	e := sw.byKey[key]
	if e != nil && e.closing {
		if e.state == s.State { // a FIN_WAIT2 stub: still in FIN_WAIT2
			e.closing = false
		} else {
			if err := sw.left(e, e.closedAt, "now "+s.State.String()); err != nil {
				return nil, err
			}
			closedAt := e.closedAt
			e = nil
			if s.State == tcp.TimeWait && sw.states[tcp.TimeWait] {
				e = &watchEntry{key: key, state: tcp.TimeWait, since: closedAt, exact: true}
				if err := sw.insert(e); err != nil {
					return nil, err
				}
			}
		}
	}
	if e != nil && e.state != s.State {
		if e.skaddr != 0 {
			return nil, nil // the tracer's event is on its way
		}
		if err := sw.left(e, start, "now "+s.State.String()); err != nil {
			return nil, err
		}
		e = nil
	}
	if e == nil {
		if !sw.states[s.State] || sw.strict && !initial {
			return nil, nil
		}
		// A socket whose entry the tracer did not see: it has been in
		// its state at least since it was first listed, and at least its
		// estimated age.
		e = &watchEntry{key: key, state: s.State, since: start}
		if err := sw.insert(e); err != nil {
			return nil, err
		}
	}
	if !e.exact {
		if t, ok := s.Since(); ok && t.Before(e.since) {
			e.since = t
		}
	}
	e.sock = *s
	e.sock.Owners = nil
	e.haveSock = true
	e.missed = 0
	return e, nil
}

// refresh takes a snapshot and updates what is known.
func (sw *stuckWatch) refresh() error {
	start := sw.now()
	// Sockets gone to CLOSE may have left a TIME_WAIT stub: look at
	// TIME_WAIT too then.
	states := sw.opts.States
	if !sw.states[tcp.TimeWait] {
		for _, e := range sw.byKey {
			if e.closing {
				states = append(slices.Clone(states), tcp.TimeWait)
				break
			}
		}
	}
	seen := map[*watchEntry]bool{}
	var ferr error
	err := sw.snapshot(states, func(s *snapshot.Socket) error {
		e, err := sw.fromSnapshot(s, start, false)
		if err != nil {
			ferr = err
		}
		if e != nil {
			seen[e] = true
		}
		return err
	})
	sw.lastRefresh = sw.now()
	if err != nil {
		return err
	}
	if ferr != nil {
		return ferr
	}
	var gone []*watchEntry
	for _, e := range sw.byKey {
		if !seen[e] {
			gone = append(gone, e)
		}
	}
	slices.SortFunc(gone, func(a, b *watchEntry) int { return a.since.Compare(b.since) })
	for _, e := range gone {
		switch {
		case e.closing:
			if e.closedAt.Before(start) {
				err = sw.left(e, e.closedAt, "closed")
			}
		case e.skaddr != 0 && e.since.Before(start):
			// The tracer tells when it leaves; unless that event was lost.
			if e.missed++; e.missed >= 3 {
				err = sw.left(e, start, "gone")
			}
		case e.since.Before(start):
			err = sw.left(e, start, "gone")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Tick refreshes every second and reports the sockets that crossed the
// threshold.
func (sw *stuckWatch) Tick() error {
	if sw.now().Sub(sw.lastRefresh) >= refreshInterval {
		if err := sw.refresh(); err != nil {
			return err
		}
	}
	if err := sw.report(); err != nil {
		return err
	}
	if err := sw.w.Flush(); err != nil {
		return err
	}
	if readerGone(sw.stdout) {
		return errReaderGone
	}
	return nil
}

// report prints the sockets that have now been in their state for the
// threshold, with details no older than their entry into the state.
func (sw *stuckWatch) report() error {
	due := sw.due(sw.now())
	if len(due) == 0 {
		return nil
	}
	for _, e := range due {
		// No details since it entered the state, nor a snapshot since.
		if (!e.haveSock || e.sock.Seen.Before(e.since)) && sw.lastRefresh.Before(e.since) {
			if err := sw.refresh(); err != nil {
				return err
			}
			due = sw.due(sw.now())
			break
		}
	}
	var ready []*watchEntry
	var socks []snapshot.Socket
	for _, e := range due {
		if e.haveSock && !e.sock.Seen.Before(e.since) {
			ready = append(ready, e)
			socks = append(socks, e.sock)
		}
	}
	if len(ready) == 0 {
		return nil
	}
	if err := sw.owners(socks); err != nil {
		return err
	}
	now := sw.now()
	for i, e := range ready {
		e.sock.Owners = socks[i].Owners
		e.reported = true
		sw.found++
		if err := sw.w.Write(&output.StuckRow{Time: now, Event: "stuck", Sock: &e.sock,
			Age: now.Sub(e.since), AgeEstimated: !e.exact}); err != nil {
			return err
		}
	}
	return nil
}

// due lists the entries past the threshold not reported yet, oldest first.
func (sw *stuckWatch) due(now time.Time) []*watchEntry {
	var due []*watchEntry
	for _, e := range sw.byKey {
		if !e.closing && !e.reported && sw.states[e.state] && now.Sub(e.since) >= sw.threshold {
			due = append(due, e)
		}
	}
	slices.SortFunc(due, func(a, b *watchEntry) int { return a.since.Compare(b.since) })
	return due
}
