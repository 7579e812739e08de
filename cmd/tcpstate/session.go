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

	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// sessionConfig is what a streaming command (trace, life, stuck --watch)
// brings to a session.
type sessionConfig struct {
	duration  time.Duration
	opts      tracer.Options
	netnsPath string // the file of opts.NetNS, if any
	banner    string // the first line on stderr, once the tracer is attached
	out       sessionOutput
	// handler builds what receives the tracer's events, once the tracer
	// is attached (stuck --watch takes its first snapshot then; metrics
	// reads the tracer's tallies).
	handler func(*tracer.Tracer) (tracer.Handler, error)
	// finish, when set, runs once the tracer has stopped, before the
	// last flush (ladder draws what waits for TIME_WAIT's end).
	finish func() error
	// summary is the last line on stderr, given the events lost; none
	// when nil.
	summary func(lost uint64) string
	// goneStatus, when set, is returned after the summary when the
	// session ended because the --netns namespace is gone.
	goneStatus error
}

// sessionOutput is a command's output: a header, and buffered records.
type sessionOutput interface {
	Begin() error
	Flush() error
}

// session is one run of the tracer for a command. As the tracer's
// Handler it passes events to the command's handler and, on each tick,
// flushes the output, notices a reader that went away, reports what the
// tracer lost or could not follow, and ends when the --netns namespace is
// gone.
type session struct {
	h tracer.Handler
	// filter is the command's; its family test (MatchFamily) is also the
	// kernel's (family_of in bpf/filters.h).
	filter   tcp.Filter
	out      sessionOutput
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
	nsGoneAt time.Time
	nsEnded  bool // its session ended: said once
	// nsUnchecked is set while the namespace cannot be checked for want
	// of file descriptors, said once until a check succeeds again.
	nsUnchecked bool
}

// runSession loads the tracer and runs the command's handler until ctx
// ends, Ctrl-C, SIGTERM, SIGHUP (the terminal or ssh session went away),
// the duration, or the end of the --netns namespace; then it prints what
// the tracer could not follow and the summary on stderr.
func runSession(ctx context.Context, stdout, stderr io.Writer, cfg sessionConfig) error {
	ctx, stop, err := startOutput(ctx, stdout)
	if err != nil {
		return err
	}
	defer stop()
	ctx, end := context.WithCancel(ctx)
	defer end()
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}

	opts := cfg.opts
	t, err := newTracer(&opts, cfg.netnsPath)
	if err != nil {
		return err
	}
	defer t.Close()
	raisePriority()
	fmt.Fprintln(stderr, cfg.banner)
	for _, n := range t.Notices() {
		fmt.Fprintf(stderr, "tcpstate: %s\n", n)
	}
	if n := t.Unseeded(); n > 0 {
		fmt.Fprintf(stderr, "tcpstate: %d sockets older than tcpstate will show no owner (too many to record)\n", n)
	}

	s := &session{out: cfg.out, tracer: t, stdout: stdout, stderr: stderr, end: end, filter: opts.Filter,
		netns: cfg.netnsPath, nsInode: opts.NetNS, nsCookie: opts.NetNSCookie}
	err = s.out.Begin()
	if err == nil {
		s.h, err = cfg.handler(t)
	}
	if err == nil {
		err = s.Tick()
	}
	if err == nil {
		err = t.Run(ctx, s)
	}
	if done, err := endOutput(err, cfg.finish, s.out); done {
		return err
	}
	lost, err := t.Lost()
	if err != nil {
		return err
	}
	if err := s.reportShortfalls(true); err != nil {
		return err
	}
	if cfg.summary != nil {
		fmt.Fprintln(stderr, cfg.summary(lost))
	}
	if s.nsGone {
		return cfg.goneStatus
	}
	return nil
}

// startOutput readies a command that writes to stdout until the returned
// context ends: at Ctrl-C, SIGTERM or SIGHUP (the terminal or ssh session
// went away). With SIGPIPE caught, a write to a closed pipe fails with
// EPIPE instead of killing us, so `| head` ends cleanly; an output that
// cannot be written at all fails now.
func startOutput(ctx context.Context, stdout io.Writer) (context.Context, context.CancelFunc, error) {
	ctx, stop := signal.NotifyContext(ctx, stopSignals...)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	if err := checkOutput(stdout); err != nil {
		stop()
		return nil, nil, err
	}
	return ctx, stop, nil
}

// endOutput ends a command's output after its run ended with err: its
// finish, if any, and the last flush. A reader that went away (`| head`)
// is no error: the summary still goes to stderr. done tells the caller to
// return err now, without a summary.
func endOutput(err error, finish func() error, out sessionOutput) (done bool, _ error) {
	if err == nil && finish != nil {
		err = finish()
	}
	if err == nil {
		err = out.Flush()
	}
	if isReaderGone(err) {
		return false, nil
	}
	return err != nil, err
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

func (s *session) Event(ev *tracer.Event) error {
	if !s.filter.MatchFamily(ev.Family, ev.LAddr, ev.RAddr) {
		return nil
	}
	return s.h.Event(ev)
}

// Note passes the tracer's notes on to a handler that wants them.
func (s *session) Note(ev *tracer.Event) error {
	if n, ok := s.h.(tracer.Noter); ok {
		return n.Note(ev)
	}
	return nil
}

func (s *session) Tick() error {
	if err := s.h.Tick(); err != nil {
		return err
	}
	if err := s.out.Flush(); err != nil {
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
			fmt.Fprintf(s.stderr, "tcpstate: lost %d events (ring buffer full, or a BPF program busy on the CPU, which the kernel counts for every namespace and socket, filtered or not; %d lost in all)\n", lost-s.lost, lost)
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
	if s.nsInode == 0 || s.netns == "" {
		return nil
	}
	if s.nsGone {
		return s.endAfterTimeWaits()
	}
	alive, err := snapshot.NetNSAlive(s.netns, s.nsInode, s.nsCookie)
	if outOfFiles(err) {
		// Not knowing is no reason to end: tracing and counting go on,
		// and the check is tried again at the next tick.
		if !s.nsUnchecked {
			fmt.Fprintf(s.stderr, "tcpstate: cannot check that network namespace %s is still there: %v; going on, and trying again every second\n", s.netns, err)
		}
		s.nsUnchecked = true
		return nil
	}
	if err != nil || alive {
		if err == nil && s.nsUnchecked {
			fmt.Fprintf(s.stderr, "tcpstate: network namespace %s checked again\n", s.netns)
			s.nsUnchecked = false
		}
		return err
	}
	s.nsGone, s.nsGoneAt = true, time.Now()
	fmt.Fprintf(s.stderr, "tcpstate: network namespace %s is gone (no process is in it and no file names it); ending\n", s.netns)
	return s.endAfterTimeWaits()
}

// nsGoneWait bounds the wait for a gone namespace's TIME_WAITs.
const nsGoneWait = 5 * time.Second

// endAfterTimeWaits ends the session once the TIME_WAITs of the gone
// namespace are seen to end: the kernel removes them with the namespace,
// a moment after its last process or file, and their ends are shown.
// Those left after nsGoneWait are said.
func (s *session) endAfterTimeWaits() error {
	if s.nsEnded {
		return nil
	}
	n, err := s.tracer.TimeWaitsLeft()
	if err != nil {
		return err
	}
	if n > 0 && time.Since(s.nsGoneAt) < nsGoneWait {
		return nil
	}
	if n > 0 {
		fmt.Fprintf(s.stderr, "tcpstate: %d TIME_WAIT or orphaned FIN_WAIT2 sockets of the namespace still followed %v after it went: their ends are not shown\n", n, nsGoneWait)
	}
	s.nsEnded = true
	s.end()
	return nil
}

// outOfFiles reports whether err is the process's or the system's file
// descriptors running out: a passing want.
func outOfFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
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
