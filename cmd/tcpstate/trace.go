// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

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

  # Slow handshakes: SYN_SENT lasting over 100 ms
  sudo tcpstate -o json | jq -c 'select(.oldstate=="SYN_SENT" and .in_state_us > 100000)'`

// traceFlags are the flags of 'tcpstate trace'.
type traceFlags struct {
	filterFlags
	output    string
	duration  time.Duration
	kernelBTF string
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

Filters run in the kernel; list flags take comma-separated values and may be
repeated. At exit "N events, M lost" goes to stderr; lost events (the ring
buffer was full) are also reported as they happen.`,
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
	fs.StringVar(&f.kernelBTF, "kernel-btf", "", "BTF file for this kernel, when /sys/kernel/btf/vmlinux is missing")
	f.register(fs)
	fs.SortFlags = false
	return cmd
}

func (f *traceFlags) validate() (tracer.Options, output.Format, error) {
	format, err := output.New(f.output)
	if err != nil {
		return tracer.Options{}, nil, usagef("invalid --output %q: want table or json", f.output)
	}
	if f.duration < 0 {
		return tracer.Options{}, nil, usagef("invalid --duration %s: must be positive", f.duration)
	}
	opts, err := f.options()
	if err != nil {
		return opts, nil, err
	}
	if f.kernelBTF != "" {
		if _, err := os.Stat(f.kernelBTF); err != nil {
			return opts, nil, usagef("invalid --kernel-btf %q: %v", f.kernelBTF, err)
		}
		opts.KernelBTF = f.kernelBTF
	}
	return opts, format, nil
}

func runTrace(ctx context.Context, f *traceFlags, stdout, stderr io.Writer) error {
	opts, format, err := f.validate()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	// With SIGPIPE caught, a write to a closed pipe fails with EPIPE
	// instead of killing us, so `| head` ends cleanly.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	t, err := tracer.New(opts)
	if err != nil {
		return err
	}
	defer t.Close()
	fmt.Fprintln(stderr, "Tracing TCP state transitions. Ctrl-C to end.")

	h := &traceHandler{printer: output.NewPrinter(stdout, format), tracer: t, stdout: stdout, stderr: stderr}
	if err := h.printer.Begin(); err != nil {
		return err
	}
	if n := t.Unseeded(); n > 0 {
		fmt.Fprintf(stderr, "tcpstate: %d sockets older than tcpstate will show no owner (too many to record)\n", n)
	}
	err = t.Run(ctx, h)
	if err == nil {
		err = h.printer.Flush()
	}
	if isReaderGone(err) {
		return nil
	}
	if err != nil {
		return err
	}
	lost, err := t.Lost()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d events, %d lost\n", h.printer.Events(), lost)
	return nil
}

// traceHandler prints events and, on each tick, flushes, reports newly lost
// events and notices a reader that went away.
type traceHandler struct {
	printer  *output.Printer
	tracer   *tracer.Tracer
	stdout   io.Writer
	stderr   io.Writer
	lost     uint64
	lastLost time.Time
}

func (h *traceHandler) Event(ev *tracer.Event) error { return h.printer.Print(ev) }

func (h *traceHandler) Tick() error {
	if err := h.printer.Flush(); err != nil {
		return err
	}
	if readerGone(h.stdout) {
		return errReaderGone
	}
	if now := time.Now(); now.Sub(h.lastLost) >= time.Second {
		h.lastLost = now
		lost, err := h.tracer.Lost()
		if err != nil {
			return err
		}
		if lost > h.lost {
			fmt.Fprintf(h.stderr, "tcpstate: lost %d events (ring buffer full; %d lost in all)\n", lost-h.lost, lost)
			h.lost = lost
		}
	}
	return nil
}

var errReaderGone = errors.New("output reader went away")

func isReaderGone(err error) bool {
	return errors.Is(err, errReaderGone) || errors.Is(err, syscall.EPIPE)
}

// readerGone reports whether w is a pipe whose reading end was closed, so an
// idle `tcpstate | head -1` ends without waiting for another event.
func readerGone(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: 0}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0
}
