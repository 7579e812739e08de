// SPDX-License-Identifier: Apache-2.0

package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tcpstate/tcpstate/conn"
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

  # CLOSE_WAIT sockets of the pods of one Kubernetes namespace
  sudo tcpstate stuck --state close-wait --namespace shop

  # For scripts: which processes hold stuck sockets
  sudo tcpstate stuck -o json | jq -r '.owners[] | "\(.pid) \(.comm)"' | sort | uniq -c`

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
shows them, the pod of the holders (NAMESPACE/POD, from their
/proc/PID/cgroup and kubelet's /var/log/pods; '-' outside pods), the
pending timer and one line saying why. TIME_WAIT is normal and listed only
when named in --state. With -o json a row in a container adds container_id
and, in a pod, pod_uid, namespace, pod and container (those known).

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
	if err := f.checkDuration(f.duration); err != nil {
		return snapshot.Options{}, err
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
		o.States = slices.Clone(conn.StuckStates)
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
	f.sayNoPods(stderr)
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
		found, err = listStuck(opts, f.threshold, &f.filterFlags, w, stderr)
	}
	f.reportResolver(stderr)
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
func listStuck(opts snapshot.Options, threshold time.Duration, f *filterFlags, w *output.StuckWriter, stderr io.Writer) (int, error) {
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
	if !opts.ReadsOwners() {
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
		if err := w.Write(&output.StuckRow{Time: s.Seen, Sock: s, Age: s.Age, AgeEstimated: true, Identity: f.holderIdentity(s)}); err != nil {
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
	// unknown counts the sockets whose age nothing bounds, per state.
	unknown map[tcp.State]int
}

func (m *maybeStuck) add(s *snapshot.Socket, threshold time.Duration) {
	if !s.AgeKnown {
		if m.unknown == nil {
			m.unknown = map[tcp.State]int{}
		}
		m.unknown[s.State]++
		return
	}
	if s.Age >= threshold || !s.AgeMaxKnown || s.AgeMax < threshold {
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
	if len(m.unknown) > 0 {
		n, names := 0, []string(nil)
		for _, s := range tcp.States() {
			if m.unknown[s] > 0 {
				n += m.unknown[s]
				names = append(names, s.String())
			}
		}
		fmt.Fprintf(stderr, "tcpstate: %d %s (%s) not listed, age unknown: the kernel keeps no trace of when a socket entered this state; "+
			"'tcpstate stuck --watch' times those that enter it from then on\n", n, plural(n, "socket", "sockets"), strings.Join(names, ", "))
	}
	if m.n == 0 {
		return
	}
	var names []string
	for _, s := range tcp.States() {
		if m.states[s] {
			names = append(names, s.String())
		}
	}
	what := plural(m.n, "socket", "sockets")
	fmt.Fprintf(stderr, "tcpstate: %d more %s (%s) may have been in their state for over %s: "+
		"it began between %s and %s ago, and ACKs received since (answers to keepalive probes, say) hide when; "+
		"'tcpstate stuck --watch' times them exactly\n",
		m.n, what, strings.Join(names, ", "), threshold, output.AppendAge(nil, m.min), output.AppendAge(nil, m.max))
}

func watchStuck(ctx context.Context, f *stuckFlags, opts snapshot.Options, w *output.StuckWriter, stdout, stderr io.Writer) (int, error) {
	// The tracer also follows the states a TIME_WAIT socket comes from,
	// to know exactly when it entered TIME_WAIT.
	topts := tracer.Options{Filter: opts.Filter}
	topts.States = slices.Clone(opts.States)
	if slices.Contains(opts.States, tcp.TimeWait) {
		topts.States = append(topts.States, tcp.FinWait1, tcp.FinWait2, tcp.Closing)
	}
	topts.KernelBTF = f.kernelBTF
	names := make([]string, len(opts.States))
	for i, s := range opts.States {
		names[i] = s.String()
	}
	var sw *conn.StuckWatch
	var snap *snapshot.Snapshotter
	found, left := 0, 0
	shown := map[*snapshot.Socket]bool{} // reported stuck, with --namespace or --pod
	defer func() {
		if snap != nil {
			snap.Close()
		}
	}()
	err := runSession(ctx, stdout, stderr, sessionConfig{
		duration: f.duration, opts: topts, netnsPath: opts.NetNSPath,
		banner: fmt.Sprintf("Watching for TCP sockets in %s for over %s. Ctrl-C to end.", strings.Join(names, ", "), f.threshold),
		out:    w,
		// The tracer is attached first, so that nothing happens unseen
		// between it and the first snapshot.
		handler: func(*tracer.Tracer) (tracer.Handler, error) {
			refresh := opts
			refresh.PIDs, refresh.Comms, refresh.CgroupID, refresh.Owners, refresh.Holders = nil, nil, 0, false, nil
			var err error
			if snap, err = snapshot.NewSnapshotter(refresh); err != nil {
				return nil, err
			}
			strict := len(opts.PIDs) > 0 || len(opts.Comms) > 0 || opts.CgroupID != 0 || opts.Holders != nil
			sw = conn.NewStuckWatch(opts, f.threshold, strict, func(states []tcp.State, visit func(*snapshot.Socket) error) error {
				snap.SetStates(states)
				return snap.Snapshot(visit)
			}, func(r *conn.StuckReport) error {
				// The tracer cannot filter on pods: sockets it adds are
				// checked here, against their holders when reported
				// stuck; when they leave, their holders may be gone,
				// so the first report decides.
				if opts.Holders != nil {
					if r.Event == "left" {
						if !shown[r.Sock] {
							return nil
						}
						delete(shown, r.Sock)
					} else if !opts.Holders(r.Sock) {
						return nil
					} else {
						shown[r.Sock] = true
					}
				}
				if r.Event != "left" {
					found++
				} else {
					left++
				}
				return w.Write(&output.StuckRow{Time: r.Time, Event: r.Event, Sock: r.Sock, Age: r.Age, AgeEstimated: r.AgeEstimated, Why: r.Why,
					Identity: f.holderIdentity(r.Sock)})
			})
			return sw, sw.Start(func(visit func(*snapshot.Socket) error) error { return snapshot.Snapshot(opts, visit) })
		},
		summary: func(lost uint64) string { return fmt.Sprintf("%d stuck, %d left, %d events lost", found, left, lost) },
	})
	return found, err
}

// plural is one or many, as n says.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
