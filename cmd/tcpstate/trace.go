// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/tcpstate/tcpstate/output"
	"github.com/tcpstate/tcpstate/tracer"
)

const traceExamples = `  # Every transition on the host, as a table, until Ctrl-C
  sudo tcpstate

  # Sockets entering or leaving CLOSE_WAIT on port 8080, for 30 seconds
  sudo tcpstate --state close-wait --lport 8080 -d 30s

  # What nginx's sockets do, IPv6 only
  sudo tcpstate --comm nginx -6

  # JSON lines for jq: count transitions by new state
  sudo tcpstate -o json -d 10s | jq -r .newstate | sort | uniq -c

  # Who owns the sockets that go into CLOSE_WAIT (peer closed, app did not)
  sudo tcpstate -o json --state CLOSE_WAIT | jq -r 'select(.newstate=="CLOSE_WAIT") | "\(.pid) \(.comm)"'

  # How long connections sit in TIME_WAIT on this host
  sudo tcpstate -o json --state time-wait | jq -c 'select(.oldstate=="TIME_WAIT") | {raddr, rport, in_state_us}'

  # Sequence numbers at each transition, to line up with tcpdump -S
  sudo tcpstate --seq --rport 443

  # Transitions of the sockets of one pod, and the pod of each CLOSE_WAIT owner
  sudo tcpstate --pod shop/cart-7d9f8b6c5-x2x4z
  sudo tcpstate -o json --state close-wait | jq -r 'select(.newstate=="CLOSE_WAIT") | "\(.namespace)/\(.pod)"'

  # Slow handshakes: SYN_SENT lasting over 100 ms
  sudo tcpstate -o json | jq -c 'select(.oldstate=="SYN_SENT" and .in_state_us > 100000)'`

// traceFlags are the flags of 'tcpstate trace'.
type traceFlags struct {
	filterFlags
	output    string
	duration  time.Duration
	kernelBTF string
	raw       bool
	seq       bool
	profile   string // CPU profile file, for performance work
}

func newTraceCmd(stdout, stderr io.Writer) *cobra.Command {
	var f traceFlags
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Print TCP state transitions as they happen (the default command)",
		Long: `Print one line per TCP state transition, live, until Ctrl-C or --duration.

PID and COMM name the process that owns the socket: the one that called
connect() or listen(), or got the socket from accept(). A server's child
socket has no owner (pid 0, shown as "-") until the server accepts it. After
the owner closes the socket the last owner is kept.

MS (in_state_us in JSON) is the time spent in the old state; it is unknown for
sockets that existed before tcpstate started.

The kernel reports FIN_WAIT2 -> CLOSE when a connection enters TIME_WAIT (the
socket is replaced by a small timewait socket that lives 60 s) and nothing
when TIME_WAIT ends; for a socket closed in FIN_WAIT2 it reports CLOSE at once
although the connection waits for the peer's FIN up to tcp_fin_timeout.
tcpstate shows what really happens: FIN_WAIT2 -> TIME_WAIT, TIME_WAIT -> CLOSE
(expiry, reuse of the 4-tuple, or reset) and FIN_WAIT2 -> CLOSE when an
orphan times out. These derived transitions are marked with '*' in the table
and "synthesized": true in JSON; --raw shows the kernel's view instead.

--seq adds snd_una, snd_nxt and rcv_nxt at each transition: after the
handshake snd_una is the ISN + 1 and rcv_nxt the peer's ISN + 1; the FIN
takes one sequence number, so the peer's rcv_nxt at CLOSE_WAIT is one past
our last byte.

In JSON, an owner running in a container adds container_id and, in a
Kubernetes pod, pod_uid, namespace, pod and container (those known): read
from the owner's /proc/PID/cgroup (or the socket's cgroup when the owner is
gone) and kubelet's /var/log/pods and /var/log/containers, cached. Outside
containers these keys are absent.

Filters run in the kernel, except --namespace and --pod (in tcpstate, on
the owner's pod; a socket nobody owns yet matches them only through its
cgroup); list flags take comma-separated values and may be
repeated; an empty value (--lport "") is an error, not "no filter". At exit
"N events, M lost" goes to stderr; lost events (the ring buffer was full) are
also reported as they happen.`,
		Example:      traceExamples,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTrace(cmd.Context(), &f, stdout, stderr)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table or json (one object per line)")
	fs.DurationVarP(&f.duration, "duration", "d", 0, "stop after this long (e.g. 30s, 5m); default: until Ctrl-C")
	fs.BoolVar(&f.raw, "raw", false, "show only what the kernel reports: FIN_WAIT2 -> CLOSE instead of TIME_WAIT in and out")
	fs.BoolVar(&f.seq, "seq", false, "also show the sequence numbers snd_una, snd_nxt, rcv_nxt (absolute, as tcpdump -S)")
	fs.StringVar(&f.profile, "cpuprofile", "", "write a Go CPU profile of tcpstate itself to this file")
	_ = fs.MarkHidden("cpuprofile")
	fs.StringVar(&f.kernelBTF, "kernel-btf", "", "BTF file for this kernel, when /sys/kernel/btf/vmlinux is missing")
	f.register(fs)
	fs.SortFlags = false
	return cmd
}

func (f *traceFlags) validate() (tracer.Options, output.Format, error) {
	format, err := output.NewWith(f.output, output.Options{Seq: f.seq, Pods: f.resolver()})
	if err != nil {
		return tracer.Options{}, nil, usagef("invalid --output %q: want table or json", f.output)
	}
	if err := f.checkDuration(f.duration); err != nil {
		return tracer.Options{}, nil, err
	}
	opts, err := f.options()
	if err != nil {
		return opts, nil, err
	}
	if f.kernelBTF != "" {
		if err := checkKernelBTF(f.kernelBTF); err != nil {
			return opts, nil, err
		}
		opts.KernelBTF = f.kernelBTF
	}
	opts.Raw = f.raw
	return opts, format, nil
}

// maxKernelBTF bounds the size of a --kernel-btf file: a kernel's BTF is a
// few MiB, and the file is read whole into memory.
const maxKernelBTF = 1 << 30

// checkKernelBTF accepts a regular file of at most maxKernelBTF bytes, so
// that a device (/dev/zero) or a huge file is refused before it is read.
func checkKernelBTF(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return usagef("invalid --kernel-btf %q: %v", path, err)
	}
	if !st.Mode().IsRegular() {
		return usagef("invalid --kernel-btf %q: not a regular file; give a BTF file such as one from BTFHub", path)
	}
	if st.Size() > maxKernelBTF {
		return usagef("invalid --kernel-btf %q: %d bytes is too large for a kernel's BTF (at most 1 GiB)", path, st.Size())
	}
	f, err := os.Open(path)
	if err != nil {
		return usagef("invalid --kernel-btf %q: %v", path, err)
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || !isBTF(magic) {
		return usagef("invalid --kernel-btf %q: not a BTF file (neither raw BTF, which starts with 0xeb9f, nor ELF); give a BTF file such as one from BTFHub", path)
	}
	return nil
}

// isBTF tells by its first bytes whether a file can be a kernel's BTF: raw
// BTF (magic 0xeb9f, either byte order) or an ELF file with a .BTF section.
func isBTF(magic [4]byte) bool {
	return magic[0] == 0x9f && magic[1] == 0xeb || magic[0] == 0xeb && magic[1] == 0x9f || string(magic[:]) == "\x7fELF"
}

func runTrace(ctx context.Context, f *traceFlags, stdout, stderr io.Writer) error {
	opts, format, err := f.validate()
	if err != nil {
		return err
	}
	f.sayNoPods(stderr)
	stop, err := startProfile(f.profile)
	if err != nil {
		return err
	}
	defer stop()
	printer := output.NewPrinter(outputWriter{stdout}, format)
	defer f.reportResolver(stderr)
	return runSession(ctx, stdout, stderr, sessionConfig{
		duration: f.duration, opts: opts, netnsPath: f.netnsPath,
		banner:  tracingBanner,
		out:     printer,
		handler: func(*tracer.Tracer) (tracer.Handler, error) { return eventPrinter{printer, &f.filterFlags}, nil },
		summary: func(lost uint64) string { return fmt.Sprintf("%d events, %d lost", printer.Records(), lost) },
	})
}

// tracingBanner is the first line on stderr of trace and life.
const tracingBanner = "Tracing TCP state transitions. Ctrl-C to end."

// eventPrinter prints every transition (tcpstate trace) of the pods
// --namespace and --pod select: the kernel cannot tell pods apart.
type eventPrinter struct {
	*output.Printer[tracer.Event]
	f *filterFlags
}

func (p eventPrinter) Event(ev *tracer.Event) error {
	if !p.f.matchPod(ev.Pid, ev.CgroupID, ev.Time) {
		return nil
	}
	return p.Print(ev)
}
func (p eventPrinter) Tick() error { return nil } // the session flushes

// Note prints the RSTs that are records of their own: the one close()
// sends just after its socket's CLOSE, and those sent for segments that
// found no socket.
func (p eventPrinter) Note(ev *tracer.Event) error {
	if ev.Note != tracer.NoteLateReset && ev.Note != tracer.NoteNoSocket {
		return nil
	}
	return p.Event(ev)
}

// startProfile writes a CPU profile to path (--cpuprofile; none when
// empty) until the returned function is called.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	out, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create --cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); out.Close() }, nil
}
