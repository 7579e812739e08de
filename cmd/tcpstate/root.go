// SPDX-License-Identifier: Apache-2.0

package main

import (
	"io"

	"github.com/spf13/cobra"
)

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	trace := newTraceCmd(stdout, stderr)
	root := &cobra.Command{
		Use:   "tcpstate",
		Short: "Show every TCP state transition on this host, with the process that owns the socket",
		Long: `tcpstate shows every TCP state transition on this host as it happens
(SYN_SENT, ESTABLISHED, FIN_WAIT1, CLOSE_WAIT, ...), naming the process that
owns each socket, even when the kernel makes the transition on behalf of
another task. Without a subcommand it runs 'tcpstate trace'.`,
		Example:       trace.Example,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE:          trace.RunE,
		Version:       buildVersion(),
	}
	root.SetVersionTemplate("tcpstate {{.Version}}\n")
	root.Flags().AddFlagSet(trace.Flags())
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usageError{err}
	})
	root.AddCommand(trace)
	root.AddCommand(newLifeCmd(stdout, stderr))
	root.AddCommand(newLadderCmd(stdout, stderr))
	root.AddCommand(newLsCmd(stdout, stderr))
	root.AddCommand(newStuckCmd(stdout, stderr))
	root.AddCommand(newMetricsCmd(stdout, stderr))
	addCompletion(root)
	return root
}

// noArgs rejects stray arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q for %q", args[0], cmd.CommandPath())
	}
	return nil
}
