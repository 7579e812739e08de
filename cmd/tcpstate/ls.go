// SPDX-License-Identifier: Apache-2.0

package main

import (
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tcpstate/tcpstate/output"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
)

const lsExamples = `  # Every TCP socket of the host, counted per state, with the oldest of each
  sudo tcpstate ls

  # Who holds the sockets in CLOSE_WAIT (the peer closed, the app did not)
  sudo tcpstate ls --state close-wait --by process

  # TIME_WAIT pile-up per remote address
  sudo tcpstate ls --state time-wait --by remote

  # Which pods hold sockets in CLOSE_WAIT
  sudo tcpstate ls --state close-wait --by pod

  # Sockets of one service, per state, as JSON
  sudo tcpstate ls --lport 8080 -o json`

type lsFlags struct {
	filterFlags
	output string
	by     string
}

func newLsCmd(stdout, stderr io.Writer) *cobra.Command {
	var f lsFlags
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "Count the TCP sockets that exist now, per state, with the oldest of each",
		Long: `Take one snapshot of every TCP socket on the host — in every network
namespace, including TIME_WAIT, SYN_RECV request sockets and sockets older
than tcpstate — and count them per state, with the oldest age in each state.

The kernel is read directly (sock_diag netlink, as ss does). OLDEST is a
lower bound ('>=') of the time the oldest socket of the row has been in its
state, from the kernel's own timestamps and timers on each socket:
  ESTABLISHED                     the largest of tcpi_last_data_sent,
                                  _data_recv and _ack_recv (all three are set
                                  at the handshake and only move forward)
  CLOSE_WAIT, FIN_WAIT2, CLOSING  tcpi_last_ack_recv
  TIME_WAIT                       60 s minus the time left
  FIN_WAIT2 after close()         tcp_fin_timeout minus the time left
  SYN_SENT, SYN_RECV, FIN_WAIT1,  from the retransmissions so far, the
  LAST_ACK                        timeout and the time left
(see 'tcpstate stuck --help'). LISTEN sockets have no age ('-').

--by groups the counts within each state: process (PID/COMM of the holder:
a socket shared by several processes counts for each; '-' for sockets no
process holds, such as TIME_WAIT), remote (remote address), local (local
address and port) or pod (NAMESPACE/POD of the holders, read from their
/proc/PID/cgroup and kubelet's /var/log/pods; the pod's uid when kubelet's
logs do not name it; '-' outside pods). With -o json, --by process and
--by pod rows carry container_id, pod_uid, namespace, pod and container,
those known, when the holder runs in a container.

Filters are those of 'tcpstate trace', applied to each socket: --state
selects sockets in these states, --pid, --comm, --namespace and --pod match
any process holding the socket, --netns reads one namespace only.

It needs root: CAP_SYS_PTRACE to read which processes hold each socket
(/proc/PID/fd), CAP_SYS_ADMIN to read other network namespaces.`,
		Example:      lsExamples,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLs(&f, stdout, stderr)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table or json (one object per line)")
	fs.StringVar(&f.by, "by", "", "group the counts of each state by process, remote, local or pod")
	f.register(fs)
	stateUsage(fs, "only sockets in these states (e.g. CLOSE_WAIT,time-wait)")
	holderUsage(fs)
	fs.SortFlags = false
	return cmd
}

func runLs(f *lsFlags, stdout, stderr io.Writer) error {
	if f.output != "table" && f.output != "json" {
		return usagef("invalid --output %q: want table or json", f.output)
	}
	by, err := output.ParseGroupBy(f.by)
	if err != nil {
		return usagef("invalid --by %q: want process, remote, local or pod", f.by)
	}
	opts, err := snapshotOptions(&f.filterFlags)
	if err != nil {
		return err
	}
	if err := checkSnapshotPrivileges("ls"); err != nil {
		return err
	}
	f.sayNoPods(stderr)
	if err := checkOutput(stdout); err != nil {
		return err
	}
	opts.Owners = by == output.ByProcess || by == output.ByPod
	sum := output.NewSummaryWith(by, f.resolver())
	if err := snapshot.Snapshot(opts, func(s *snapshot.Socket) error {
		sum.Add(s)
		return nil
	}); err != nil {
		return err
	}
	return output.WriteSummary(outputWriter{stdout}, f.output, sum)
}

// snapshotOptions turns the filter flags into snapshot options. Request
// sockets are SYN_RECV in snapshots, so NEW_SYN_RECV means SYN_RECV.
func snapshotOptions(f *filterFlags) (snapshot.Options, error) {
	o, err := f.options()
	if err != nil {
		return snapshot.Options{}, err
	}
	for i, s := range o.States {
		if s == tcp.NewSynRecv {
			o.States[i] = tcp.SynRecv
		}
	}
	so := snapshot.Options{Filter: o.Filter, NetNSPath: f.netnsPath}
	if !f.pods.Empty() {
		so.Holders = f.matchHolders
	}
	return so, nil
}

// holderUsage rewrites the help of --pid and --comm for snapshots, where
// every process holding a socket counts.
func holderUsage(fs *pflag.FlagSet) {
	if fl := fs.Lookup("pid"); fl != nil {
		fl.Usage = "only sockets held by these process ids, through any fd (comma-separated)"
	}
	if fl := fs.Lookup("comm"); fl != nil {
		fl.Usage = "only sockets held by processes with these names (comma-separated, as in /proc/PID/comm)"
	}
	if fl := fs.Lookup("namespace"); fl != nil {
		fl.Usage = "only sockets held by processes in pods of these Kubernetes namespaces (comma-separated)"
	}
	if fl := fs.Lookup("pod"); fl != nil {
		fl.Usage = "only sockets held by processes in these Kubernetes pods: NAME, NAMESPACE/NAME or pod uid (comma-separated)"
	}
}

// stateUsage rewrites the help of --state for commands that select
// sockets by their state rather than transitions.
func stateUsage(fs *pflag.FlagSet, usage string) {
	if fl := fs.Lookup("state"); fl != nil {
		fl.Usage = usage
	}
}
