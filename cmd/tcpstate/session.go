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

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/output"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tracer"
)

// session is one run of the tracer for a command: it prints what the
// command's handler produces and, on each tick, flushes, reports newly lost
// events and notices a reader that went away. As a Handler it prints every
// transition (tcpstate trace).
type session struct {
	printer  *output.Printer
	tracer   *tracer.Tracer
	stdout   io.Writer
	stderr   io.Writer
	lost     uint64
	lastLost time.Time
	// shortfalls reported so far, by Shortfall.What
	shortfalls map[string]uint64
	// end stops the session as Ctrl-C does (drain, then the summary).
	end context.CancelFunc
	// netns is the file of --netns, for the message when it is gone;
	// nsInode and nsCookie are its namespace's.
	netns    string
	nsInode  uint32
	nsCookie uint64
	nsGone   bool
}

// runSession loads the tracer with opts (netnsPath is the file of
// opts.NetNS), runs the handler that handler
// builds until ctx ends, Ctrl-C, SIGTERM, SIGHUP (the terminal or ssh
// session went away) or duration, and prints the summary to stderr at the
// end: summary is its format, given the records printed and the events
// lost ("%d events, %d lost").
func runSession(ctx context.Context, duration time.Duration, opts tracer.Options, netnsPath string, printer *output.Printer,
	stdout, stderr io.Writer, summary string, handler func(*session) tracer.Handler) error {
	ctx, stop := signal.NotifyContext(ctx, stopSignals...)
	defer stop()
	ctx, end := context.WithCancel(ctx)
	defer end()
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	// With SIGPIPE caught, a write to a closed pipe fails with EPIPE
	// instead of killing us, so `| head` ends cleanly.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	if err := checkOutput(stdout); err != nil {
		return err
	}

	t, err := newTracer(&opts, netnsPath)
	if err != nil {
		return err
	}
	defer t.Close()
	raisePriority()
	fmt.Fprintln(stderr, "Tracing TCP state transitions. Ctrl-C to end.")
	for _, n := range t.Notices() {
		fmt.Fprintf(stderr, "tcpstate: %s\n", n)
	}
	if n := t.Unseeded(); n > 0 {
		fmt.Fprintf(stderr, "tcpstate: %d sockets older than tcpstate will show no owner (too many to record)\n", n)
	}

	s := &session{printer: printer, tracer: t, stdout: stdout, stderr: stderr, end: end,
		netns: netnsPath, nsInode: opts.NetNS, nsCookie: opts.NetNSCookie}
	if err := s.printer.Begin(); err != nil {
		return err
	}
	err = t.Run(ctx, handler(s))
	if err == nil {
		err = s.printer.Flush()
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
	if err := s.reportShortfalls(true); err != nil {
		return err
	}
	fmt.Fprintf(stderr, summary+"\n", s.printer.Events(), lost)
	return nil
}

// newTracer loads the tracer for opts with what it does not read itself:
// the cookie of the namespace of opts.NetNS from its file netnsPath, which
// the tracer filters on, and who holds the sockets that exist already.
func newTracer(opts *tracer.Options, netnsPath string) (*tracer.Tracer, error) {
	if netnsPath != "" {
		// Reading the cookie enters the namespace: without the tracer's
		// privileges, say what they are rather than fail at that.
		if err := tracer.CheckPrivileges(); err != nil {
			return nil, err
		}
		cookie, err := snapshot.NetNSCookie(netnsPath)
		if err != nil {
			return nil, err
		}
		opts.NetNSCookie = cookie
	}
	opts.Seeds = seedOwners
	return tracer.New(*opts)
}

// seedOwners puts the holders of the sockets that exist now, read from
// /proc, as the tracer's seeds.
func seedOwners(put func(tracer.Seed) error) error {
	return snapshot.SocketOwners(func(inode uint64, o snapshot.Owner) error {
		return put(tracer.Seed{Inode: inode, Pid: o.Pid, Comm: o.Comm})
	})
}

// reportShortfalls says on stderr what the tracer could not follow: what
// grew since the last report, or at the end (final) every count in all.
func (s *session) reportShortfalls(final bool) error {
	all, err := s.tracer.Shortfalls()
	if err != nil {
		return err
	}
	if s.shortfalls == nil {
		s.shortfalls = map[string]uint64{}
	}
	for _, sf := range all {
		before := s.shortfalls[sf.What]
		switch {
		case final && sf.Count > 0:
			fmt.Fprintf(s.stderr, "tcpstate: %d %s\n", sf.Count, sf.What)
		case !final && sf.Count > before:
			fmt.Fprintf(s.stderr, "tcpstate: %d more %s; %d in all\n", sf.Count-before, sf.What, sf.Count)
		}
		s.shortfalls[sf.What] = sf.Count
	}
	return nil
}

func (s *session) Event(ev *tracer.Event) error { return s.printer.Print(ev) }

func (s *session) Tick() error {
	if err := s.printer.Flush(); err != nil {
		return err
	}
	if readerGone(s.stdout) {
		return errReaderGone
	}
	if now := time.Now(); now.Sub(s.lastLost) >= time.Second {
		s.lastLost = now
		lost, err := s.tracer.Lost()
		if err != nil {
			return err
		}
		if lost > s.lost {
			fmt.Fprintf(s.stderr, "tcpstate: lost %d events (ring buffer full; %d lost in all)\n", lost-s.lost, lost)
			s.lost = lost
		}
		if err := s.reportShortfalls(false); err != nil {
			return err
		}
		if err := s.checkNetNS(); err != nil {
			return err
		}
	}
	return nil
}

// checkNetNS ends the session when the namespace of --netns is gone:
// nothing can happen in it any more. Its inode may then name a new
// namespace; the tracer's filter, by cookie, does not match that one.
func (s *session) checkNetNS() error {
	if s.nsGone || s.nsInode == 0 || s.netns == "" {
		return nil
	}
	alive, err := snapshot.NetNSAlive(s.netns, s.nsInode, s.nsCookie)
	if err != nil || alive {
		return err
	}
	s.nsGone = true
	fmt.Fprintf(s.stderr, "tcpstate: network namespace %s is gone (no process is in it and no file names it); ending\n", s.netns)
	s.end()
	return nil
}

// stopSignals end a session cleanly: the last events are printed, then
// the summary. SIGHUP comes when the terminal or ssh session is gone.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

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
