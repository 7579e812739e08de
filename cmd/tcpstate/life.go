// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tcpstate/tcpstate/conn"
	"github.com/tcpstate/tcpstate/output"
	"github.com/tcpstate/tcpstate/tracer"
)

const lifeExamples = `  # One line per connection as it ends, until Ctrl-C
  sudo tcpstate life

  # Connections to port 5432 that were reset, as JSON
  sudo tcpstate life -o json --rport 5432 | jq -c 'select(.reset)'

  # Who closes first, per remote port
  sudo tcpstate life -o json -d 60s | jq -r '"\(.rport) \(.closed_by)"' | sort | uniq -c

  # Half-closed connections (data flowed after the first FIN)
  sudo tcpstate life -o json | jq -c 'select(.half_close) | {laddr, lport, raddr, rport, path}'`

func newLifeCmd(stdout, stderr io.Writer) *cobra.Command {
	var f traceFlags
	cmd := &cobra.Command{
		Use:   "life",
		Short: "Print one line per TCP connection when it ends, with its whole path of states",
		Long: `Print one record per TCP connection when its socket ends: at CLOSE, or when
it enters TIME_WAIT (the path then ends in TIME_WAIT).

Each record has the owner, the 4-tuple, the start time and duration, the path
of states with the time spent in each, the payload bytes acknowledged by the
peer (tx_bytes) and received (rx_bytes), retransmissions, who sent the first
FIN (closed_by: local, remote or simultaneous), whether payload flowed after
the first FIN (half_close), whether a RST was sent or received (reset), and
the initial sequence numbers (isn, peer_isn) when the handshake was seen.
Connections older than tcpstate have "partial": true: their path starts at
the first state seen. Listening sockets are not connections and are left out.

With -o json, an owner running in a container adds container_id and, in a
Kubernetes pod, pod_uid, namespace, pod and container (as 'tcpstate trace').

The kernel keeps each connection's path and sends one record when it ends,
rather than each transition: on a busy host that is a tenth of the records
to read. With --state it sends the transitions of those states instead, and
the paths are made of them.

Filters are those of 'tcpstate trace' and run in the kernel (--namespace
and --pod on the connection's owner, in tcpstate). At exit
"N connections, M events lost" goes to stderr, also after | head: M counts
the records lost because the ring buffer was full (a connection each; with
--state a transition, which may leave some records incomplete), and the
transitions the kernel ran no program for (a busy CPU), which may leave a
connection without its record.`,
		Example:      lifeExamples,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, _, err := f.validate()
			if err != nil {
				return err
			}
			// The kernel keeps each connection's path and sends it at
			// its end: a record per connection, not per transition. A
			// state filter cuts paths: it needs the transitions.
			opts.Life = len(opts.States) == 0
			format, err := output.NewLifeWith(f.output, output.Options{Pods: f.resolver()})
			if err != nil {
				return usagef("invalid --output %q: want table or json", f.output)
			}
			f.sayNoPods(stderr)
			stop, err := startProfile(f.profile)
			if err != nil {
				return err
			}
			defer stop()
			return runLife(cmd.Context(), &f, opts, format, stdout, stderr)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table or json (one object per line)")
	fs.DurationVarP(&f.duration, "duration", "d", 0, "stop after this long (e.g. 30s, 5m); default: until Ctrl-C")
	fs.StringVar(&f.kernelBTF, "kernel-btf", "", "BTF file for this kernel, when /sys/kernel/btf/vmlinux is missing")
	fs.StringVar(&f.profile, "cpuprofile", "", "write a Go CPU profile of tcpstate itself to this file")
	_ = fs.MarkHidden("cpuprofile")
	f.register(fs)
	fs.SortFlags = false
	return cmd
}

func runLife(ctx context.Context, f *traceFlags, opts tracer.Options, format output.LifeFormat, stdout, stderr io.Writer) error {
	printer := output.NewPrinter(outputWriter{stdout}, format)
	defer f.reportResolver(stderr)
	lt := conn.NewLifeTracker(lifeOut{printer, &f.filterFlags})
	return runSession(ctx, stdout, stderr, sessionConfig{
		duration: f.duration, opts: opts, netnsPath: f.netnsPath,
		banner: tracingBanner,
		out:    printer,
		handler: func(*tracer.Tracer) (tracer.Handler, error) {
			return lt, nil
		},
		// Connections that ended just now wait no longer for a late RST.
		finish: lt.Flush,
		summary: func(lost uint64) string {
			return fmt.Sprintf("%d connections, %d events lost", printer.Records(), lost)
		},
	})
}

// lifeOut prints the connections a LifeTracker reports, of the pods
// --namespace and --pod select: whole connections, so that a path is not
// cut where its socket had no owner yet.
type lifeOut struct {
	*output.Printer[conn.Connection]
	f *filterFlags
}

func (o lifeOut) Connection(c *conn.Connection) error {
	if !o.f.matchPod(c.Pid, c.CgroupID, c.Time) {
		return nil
	}
	return o.Print(c)
}
func (o lifeOut) Tick() error { return nil } // the session flushes
