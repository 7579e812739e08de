// SPDX-License-Identifier: Apache-2.0

// Command tcpstate shows every TCP state transition on this host as it
// happens, with the process that owns each socket.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit status: 0 on success,
// 2 for a bad command line, 3 when metrics ended on its own (its --netns
// namespace is gone), 1 for anything else.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var es exitStatus
	if errors.As(err, &es) {
		return int(es)
	}
	fmt.Fprintf(stderr, "tcpstate: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// usageError marks a bad command line (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitStatus ends tcpstate with this status and nothing more on stderr:
// what happened was said already.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// exitNetnsGone is the status of a metrics server whose --netns namespace
// is gone: it ended on its own, so a supervisor's Restart=on-failure
// restarts it (to serve the namespace's successor, or to say it is gone).
const exitNetnsGone = exitStatus(3)
