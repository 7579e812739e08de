// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/tcpstate/tcpstate/ladder"
	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

const ladderExamples = `  # A ladder diagram of each connection to port 8080 when it ends
  sudo tcpstate ladder --lport 8080

  # The next connection curl makes, with numbers relative to each ISN
  sudo tcpstate ladder --comm curl --count 1 --relative

  # Arrows as they happen, one line each, numbered per connection
  sudo tcpstate ladder --follow --rport 443

  # Record on a production host, draw on a laptop
  sudo tcpstate --seq -o json --rport 5432 -d 60s > events.jsonl
  tcpstate ladder --from events.jsonl --count 3

  # A diagram for a GitHub issue (Mermaid renders in markdown) or a picture
  tcpstate ladder --from events.jsonl --lport 48812 -o mermaid >> issue.md
  tcpstate ladder --from events.jsonl --lport 48812 -o svg > conn.svg`

// ladderFlags are the flags of 'tcpstate ladder'.
type ladderFlags struct {
	filterFlags
	output    string
	duration  time.Duration
	kernelBTF string
	count     int
	from      string
	follow    bool
	relative  bool
	ascii     bool
}

func newLadderCmd(stdout, stderr io.Writer) *cobra.Command {
	var f ladderFlags
	cmd := &cobra.Command{
		Use:   "ladder",
		Short: "Draw each TCP connection as a ladder diagram: SYN, SYN+ACK, ACK, FIN, RST, with seq/ack and states",
		Long: `Draw one ladder diagram per TCP connection, when it ends, as the TCP textbooks do:
one vertical line per endpoint, an arrow for each segment a state transition
implies (SYN, SYN+ACK, ACK, FIN, RST) with its seq and ack, the state each
side enters, the time since the first SYN, the time spent in the previous
state, and the payload bytes that flowed between arrows.

When both ends are on this host (loopback, or two network namespaces), both
sides are real sockets, matched by 4-tuple. Otherwise the peer's states are
inferred from ours and drawn in brackets: [CLOSE_WAIT].

The diagram is inferred from the kernel's state transitions and sequence
numbers (snd_una, snd_nxt, rcv_nxt), not from captured packets:
retransmissions and window updates are not drawn, and an ACK drawn on its
own may have gone out with the next segment. The seq and ack of every SYN
and FIN are those on the wire (tcpdump -S; --relative numbers them from
each side's ISN, as tcpdump does without -S).

Marked (⚠): SYN retransmissions, a connect refused or timed out, resets, a
CLOSE_WAIT of a second or more (the application closed late), a TIME_WAIT
that did not last its 60 s (when its end came before the diagram was drawn).

A connection is drawn as soon as its sockets are closed or in TIME_WAIT:
the end of a TIME_WAIT (60 s later) is not waited for, and the title says
"TIME_WAIT still running when drawn". Connections still open at the end
(Ctrl-C, --duration, --count, the end of --from) are counted, not drawn.
--follow draws the arrows as they happen instead, each line prefixed
with #N.

--from FILE draws events recorded with 'tcpstate --seq -o json' ('-' for
standard input): record where the problem is, draw anywhere, no root
needed. The trace filters select connections (one of whose sockets
matches); with --from, --netns takes the inode number recorded in the
events. Events out of time order are put back in order within 4096
lines, and refused past that, naming the line. Drawing nothing from
--from is an error (status 1) that says why.

Formats: text (Unicode; --ascii for plain characters), mermaid (a
sequenceDiagram in a markdown code block, which GitHub and GitLab render),
svg (one connection as a standalone picture).

At most 4096 connections are followed at once; more are counted, in
connections, and said on stderr. At exit "N connections drawn" goes to stderr.`,
		Example:      ladderExamples,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLadder(cmd.Context(), &f, stdout, stderr)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.output, "output", "o", "text", "output format: text, mermaid or svg")
	fs.IntVar(&f.count, "count", 0, "stop after drawing this many connections (default: until Ctrl-C; 1 with -o svg)")
	fs.BoolVar(&f.follow, "follow", false, "draw arrows as they happen, one line each, prefixed #N per connection (text only)")
	fs.BoolVar(&f.relative, "relative", false, "seq and ack relative to each side's ISN (tcpdump's default); absolute otherwise (tcpdump -S)")
	fs.BoolVar(&f.ascii, "ascii", false, "draw with plain ASCII characters instead of Unicode lines and arrows")
	fs.StringVar(&f.from, "from", "", "draw events recorded with 'tcpstate --seq -o json' from this file ('-': standard input) instead of tracing")
	fs.DurationVarP(&f.duration, "duration", "d", 0, "stop after this long (e.g. 30s, 5m); default: until Ctrl-C")
	fs.StringVar(&f.kernelBTF, "kernel-btf", "", "BTF file for this kernel, when /sys/kernel/btf/vmlinux is missing")
	f.register(fs)
	fs.SortFlags = false
	return cmd
}

// ladderPlan is what the flags ask for, validated.
type ladderPlan struct {
	render ladder.Render
	format string
	opts   tracer.Options // kernel-side filters (live)
	track  ladder.Options // user-side selection
	netns  uint32         // --from: the recorded namespace inode to keep
	limit  int            // --count
	from   io.ReadCloser  // --from
}

func (f *ladderFlags) validate(stdin io.Reader) (ladderPlan, error) {
	p := ladderPlan{render: ladder.Render{Relative: f.relative, ASCII: f.ascii, Follow: f.follow}, format: f.output, limit: f.count}
	switch f.output {
	case "text", "mermaid", "svg":
	default:
		return p, usagef("invalid --output %q: want text, mermaid or svg", f.output)
	}
	if f.count < 0 {
		return p, usagef("invalid --count %d: want a positive number of connections", f.count)
	}
	if f.output == "svg" {
		if f.count > 1 {
			return p, usagef("invalid --count %d: -o svg draws one connection (one picture); select it with the filters", f.count)
		}
		p.limit = 1
	}
	if f.follow && f.output != "text" {
		return p, usagef("invalid --follow with -o %s: --follow draws text, line by line", f.output)
	}
	if f.ascii && f.output != "text" {
		return p, usagef("invalid --ascii with -o %s: --ascii is for text", f.output)
	}
	if err := f.checkDuration(f.duration); err != nil {
		return p, err
	}
	p.track.Follow = f.follow
	if f.from != "" {
		return p, f.validateFrom(&p, stdin)
	}
	opts, err := f.options()
	if err != nil {
		return p, err
	}
	if f.kernelBTF != "" {
		if err := checkKernelBTF(f.kernelBTF); err != nil {
			return p, err
		}
		opts.KernelBTF = f.kernelBTF
	}
	// The kernel keeps only what selects both sockets of a connection
	// alike; ports, addresses, owners and states select whole
	// connections in user space (see ladder.Options.Filter).
	p.track.Filter = opts.Filter
	p.opts = tracer.Options{Filter: tcp.Filter{IPv4: opts.IPv4, IPv6: opts.IPv6, NetNS: opts.NetNS, CgroupID: opts.CgroupID},
		KernelBTF: opts.KernelBTF}
	return p, nil
}

// validateFrom checks the flags of a replay: no kernel, so --netns is a
// recorded inode number and --cgroup cannot be told.
func (f *ladderFlags) validateFrom(p *ladderPlan, stdin io.Reader) error {
	if f.cgroup != "" {
		return usagef("invalid --cgroup with --from: recorded events carry a cgroup id, not a path; select with the other filters")
	}
	if f.kernelBTF != "" || f.duration != 0 {
		return usagef("invalid --kernel-btf or --duration with --from: they are for tracing")
	}
	if err := f.checkEmpty(); err != nil {
		return err
	}
	if f.netns != "" {
		n, err := strconv.ParseUint(f.netns, 10, 32)
		if err != nil || n == 0 {
			return usagef("invalid --netns %q with --from: want the inode number recorded in the events' \"netns\"", f.netns)
		}
		p.netns = uint32(n)
	}
	// No namespace to resolve on this host: the rest as for tracing.
	rest := f.filterFlags
	rest.netns, rest.set = "", nil
	opts, err := rest.options()
	if err != nil {
		return err
	}
	p.track.Filter = opts.Filter
	if f.from == "-" {
		p.from = io.NopCloser(stdin)
		return nil
	}
	st, err := os.Stat(f.from)
	if err == nil && st.IsDir() {
		err = errors.New("a directory")
	}
	if err != nil {
		return usagef("invalid --from %q: %v", f.from, err)
	}
	file, err := os.Open(f.from)
	if err != nil {
		return usagef("invalid --from %q: %v", f.from, err)
	}
	p.from = file
	return nil
}

func runLadder(ctx context.Context, f *ladderFlags, stdout, stderr io.Writer) error {
	p, err := f.validate(os.Stdin)
	if err != nil {
		return err
	}
	ctx, stopCount := context.WithCancel(ctx)
	defer stopCount()
	out := &ladderPrinter{w: bufio.NewWriterSize(outputWriter{stdout}, 64<<10), render: p.render, format: p.format, limit: p.limit, stop: stopCount,
		// -o svg draws one picture: from a recording, those past it
		// are counted, to say so.
		countMore: p.format == "svg" && p.from != nil}
	tr := ladder.NewTracker(out, p.track)
	h := &ladderHandler{Tracker: tr, out: out, stderr: stderr}
	summary := func(lost string) string { return tr.Summary(out.drawn, out.more, h.open) + lost }
	if p.from != nil {
		defer p.from.Close()
		return replayLadder(ctx, p, h, stdout, stderr, summary)
	}
	return runSession(ctx, stdout, stderr, sessionConfig{
		duration: f.duration, opts: p.opts, netnsPath: f.netnsPath,
		banner:  ladderBanner(f.follow),
		out:     out,
		handler: func(*tracer.Tracer) (tracer.Handler, error) { return h, nil },
		finish:  h.finish,
		summary: func(lost uint64) string { return summary(fmt.Sprintf(", %d events lost", lost)) },
	})
}

func ladderBanner(follow bool) string {
	if follow {
		return "Drawing TCP connections as they happen. Ctrl-C to end."
	}
	return "Drawing each TCP connection when it ends (without waiting for the end of a TIME_WAIT). Ctrl-C to end."
}

// replayLadder draws a recording: as a session would, it ends on Ctrl-C,
// SIGTERM, SIGHUP, --count or a reader gone, and says what it drew.
func replayLadder(ctx context.Context, p ladderPlan, h *ladderHandler, stdout, stderr io.Writer, summary func(string) string) error {
	ctx, stop, err := startOutput(ctx, stdout)
	if err != nil {
		return err
	}
	defer stop()
	var in tracer.Handler = h
	if p.netns != 0 {
		in = netnsFilter{h, p.netns}
	}
	err = ladder.Replay(ctx, p.from, in)
	var le *ladder.LineError
	if errors.As(err, &le) {
		return usagef("invalid --from %q: %v", h.fromName(p), le)
	}
	if done, err := endOutput(err, h.finish, h.out); done {
		return err
	}
	if h.out.drawn == 0 && ctx.Err() == nil {
		where := fmt.Sprintf("--from %q", h.fromName(p))
		if p.netns != 0 {
			where += fmt.Sprintf(" in network namespace %d", p.netns)
		}
		return fmt.Errorf("nothing to draw from %s: %s", where, h.NothingDrawn(h.open))
	}
	fmt.Fprintln(stderr, summary(""))
	return nil
}

// netnsFilter keeps the recorded events of one network namespace.
type netnsFilter struct {
	*ladderHandler
	netns uint32
}

func (f netnsFilter) Event(ev *tracer.Event) error {
	if ev.NetNS != f.netns {
		return nil
	}
	return f.ladderHandler.Event(ev)
}

// ladderHandler is the Tracker as a session's handler: it says on stderr,
// once, when connections go unfollowed, and at the end draws those
// waiting for their TIME_WAIT.
type ladderHandler struct {
	*ladder.Tracker
	out      *ladderPrinter
	stderr   io.Writer
	reported uint64
	open     int
}

func (h *ladderHandler) Tick() error {
	if err := h.Tracker.Tick(); err != nil {
		return err
	}
	if h.Dropped > h.reported && h.reported == 0 {
		fmt.Fprintf(h.stderr, "tcpstate: more than %d connections open at once: new ones are not followed (counted at exit)\n", ladder.DefaultMaxConns)
	}
	h.reported = h.Dropped
	return nil
}

func (h *ladderHandler) finish() error {
	if h.out.done() && !h.out.countMore {
		return nil
	}
	open, err := h.Flush()
	h.open = open
	return err
}

func (h *ladderHandler) fromName(p ladderPlan) string {
	if f, ok := p.from.(*os.File); ok {
		return f.Name()
	}
	return "-"
}

// ladderPrinter writes diagrams, up to limit (0: no limit), then stops
// the run, or with countMore counts those past the limit.
type ladderPrinter struct {
	w         *bufio.Writer
	render    ladder.Render
	format    string
	limit     int
	drawn     int
	more      int
	countMore bool
	stop      context.CancelFunc
}

func (p *ladderPrinter) Begin() error { return nil }
func (p *ladderPrinter) Flush() error { return p.w.Flush() }

func (p *ladderPrinter) done() bool { return p.limit > 0 && p.drawn >= p.limit }

func (p *ladderPrinter) Diagram(d *ladder.Diagram) error {
	if p.done() {
		if p.countMore {
			p.more++
		}
		return nil
	}
	var s string
	switch {
	case p.render.Follow:
		s = p.render.FollowEnd(d)
	case p.format == "mermaid":
		s = p.render.Mermaid(d)
	case p.format == "svg":
		s = p.render.SVG(d)
	default:
		s = p.render.Text(d)
	}
	if p.drawn > 0 && p.format != "svg" && !p.render.Follow {
		s = "\n" + s
	}
	p.drawn++
	if _, err := p.w.WriteString(s); err != nil {
		return err
	}
	if p.done() && !p.countMore {
		p.stop()
	}
	return nil
}

func (p *ladderPrinter) Follow(d *ladder.Diagram, rows []ladder.Row, first bool) error {
	if p.done() {
		return nil
	}
	_, err := p.w.WriteString(p.render.FollowText(d, rows, first))
	return err
}
