// SPDX-License-Identifier: Apache-2.0

// Package tracer loads the BPF programs that watch TCP state transitions and
// hands each transition to the caller as an Event. It is the only package
// that talks to the kernel's BPF interface.
package tracer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/tcp"
)

// Limits of the kernel-side filters (sizes of their maps).
const (
	MaxPIDs     = 1024
	MaxComms    = 8
	MaxPrefixes = 256
)

// PollInterval bounds how long an event may wait in the ring buffer before
// the reader looks: the BPF side wakes the reader only when much is queued.
const PollInterval = 50 * time.Millisecond

// wakeupBytes is how much data makes the BPF side wake the reader early.
const wakeupBytes = 1 << 20

// Options select what to trace. Zero values mean "everything". Every
// filter runs in the kernel.
type Options struct {
	tcp.Filter
	// NetNSCookie is the cookie of the namespace of Filter.NetNS (see
	// snapshot.NetNSCookie): where the kernel has cookies the filter
	// matches it, since an inode is reused by a new namespace.
	NetNSCookie uint64
	// Seeds tells who holds the sockets that exist before the tracer
	// (snapshot.SocketOwners reads it from /proc), so that their
	// transitions carry an owner too. New calls it once, after loading
	// and just before attaching, and keeps the first holder put for each
	// socket; Unseeded counts those past the kernel's table.
	Seeds func(put func(Seed) error) error
	// KernelBTF is a BTF file describing the running kernel, for kernels
	// that do not expose /sys/kernel/btf/vmlinux.
	KernelBTF string
	// Raw reports only what the kernel reports: no TIME_WAIT tracking, the
	// kernel's FIN_WAIT2 -> CLOSE where the socket really lives on.
	Raw bool
	// Tally counts transitions and observes durations in the kernel
	// instead of sending events (see Tallies): Run delivers none. The cost
	// of an always-on exporter.
	Tally bool
	// TallyCgroups also observes durations per socket cgroup (v2), for
	// histograms by pod: Tallies.Cgroups.
	TallyCgroups bool
	// Life sends one record per connection, at its end, with its whole
	// path (Event.Path), instead of its transitions: what 'life' needs,
	// at a tenth of the records. Run delivers only path records, the
	// ends of orphans (transitions) and notes. Not with Tally, nor with a
	// state filter (a path is whole or not sent).
	Life bool
	// Hollow loads and attaches every program as usual, but each returns
	// at once: nothing is seen. What the hooks alone cost, for the
	// benchmark's floor.
	Hollow bool
	// Hooks chooses how accepted sockets get their owner: HooksAuto
	// (fexit on inet_csk_accept where the kernel allows it, else at the
	// owner's first close or shutdown), or one of the two forced.
	Hooks Hooks
}

// Hooks is a choice of the kernel hooks that are not the same on every
// kernel.
type Hooks string

const (
	// HooksAuto picks HooksFentry where the kernel allows it.
	HooksAuto Hooks = ""
	// HooksFentry: fexit on inet_csk_accept names an accepted socket's
	// owner at accept(); load fails where the kernel refuses fentry.
	HooksFentry Hooks = "fentry"
	// HooksTracepoint: tracepoints only; an accepted socket's owner is
	// named at its first close() or shutdown().
	HooksTracepoint Hooks = "tracepoint"
)

// Handler receives what the tracer reads.
type Handler interface {
	// Event is called for every transition; ev is reused afterwards.
	Event(ev *Event) error
	// Tick is called at least every PollInterval, also when idle: the
	// time to flush buffered output.
	Tick() error
}

// The programs come in two flavours, of which one is loaded: tp_btf
// (typed, cheaper, and the only one that can follow TIME_WAIT) where the
// kernel has its own BTF, classic tracepoints otherwise. Their sections
// say where they attach; these lists say what is special about some.
var (
	// classicOnly are the classic-tracepoint twins of tp_btf programs.
	classicOnly = []string{tcpstateProgSetStateTp, tcpstateProgSetStateNestedTp, tcpstateProgRetransmitTp}
	// runOnly programs are run by the tracer (BPF_PROG_TEST_RUN), never
	// attached.
	runOnly = []string{tcpstateProgPollTimewait, tcpstateProgSweepSocks, tcpstateProgSweepTimewait}
	// tupleHooks only help to report the final 4-tuple of SYN_SENT and
	// SYN_RECV events; ownerHooks record who owns accepted sockets (fexit,
	// where the kernel allows it). Tally mode needs them only for the
	// filters that look at these.
	tupleHooks = []string{tcpstateProgRetransmitBtf, tcpstateProgRetransmitTp}
	ownerHooks = []string{tcpstateProgAcceptExit}
)

// Tracer is a loaded and attached set of BPF programs.
type Tracer struct {
	maps  tcpstateMaps
	progs map[string]*ebpf.Program // by name (tcpstateProg*), one flavour
	// pollNowJ and pollNextDueJ are what the last poll_timewait saw: the
	// jiffy then, and the first queued TIME_WAIT's due jiffy.
	pollNowJ, pollNextDueJ *ebpf.Variable
	// twsLive counts the timewait sockets followed (tws_live).
	twsLive *ebpf.Variable
	// sections are the programs' ELF sections: where they attach.
	sections map[string]string
	btf      bool // progs are the tp_btf flavour
	// unseeded counts sockets older than the tracer whose owner could not
	// be recorded (the seeds map was full).
	unseeded int
	links    []link.Link
	reader   *ringbuf.Reader
	dec      *decoder
	// timewait is set when TIME_WAIT is followed (not --raw, and the
	// kernel allows it).
	timewait bool
	// fexit is set when accept_exit is attached (Options.Hooks).
	fexit  bool
	tally  bool // Options.Tally
	hollow bool // Options.Hollow
	// pollWake wakes pollLoop when timewait sockets are followed again.
	pollWake chan struct{}
	// tallyCgroups: Options.Tally and Options.TallyCgroups
	tallyCgroups bool
	// missingCgroups are the cgroups with histograms that the last
	// ForgetCgroups did not find; forgetMu serializes those calls.
	missingCgroups map[uint64]bool
	forgetMu       sync.Mutex
	// skip are programs neither loaded nor attached (not needed in tally mode).
	skip    []string
	notices []string
	limits  map[tcpstateCounter]uint32 // sizes of the tables behind the counters
}

// New checks privileges and kernel support, loads the BPF programs with the
// filters of opts and attaches them. Close releases everything.
func New(opts Options) (*Tracer, error) {
	if opts.Life && (opts.Tally || len(opts.States) > 0) {
		return nil, errors.New("life records go with neither tally mode nor a state filter")
	}
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	// The owners of the sockets that exist come from /proc, which takes
	// as long as loading the programs: read it meanwhile.
	needSeeds := opts.Seeds
	if opts.Tally && len(opts.PIDs) == 0 && len(opts.Comms) == 0 {
		needSeeds = nil // owners matter to tally mode only for the owner filters
	}
	seeds := collectSeeds(needSeeds)

	kernelTypes, err := kernelBTF(opts.KernelBTF)
	if err != nil {
		return nil, err
	}
	if err := ensureTracefs(); err != nil {
		return nil, err
	}
	spec, err := loadTcpstate()
	if err != nil {
		return nil, fmt.Errorf("load BPF object: %w", err)
	}
	if err := setFilters(spec, &opts); err != nil {
		return nil, err
	}
	t := &Tracer{tally: opts.Tally, hollow: opts.Hollow, pollWake: make(chan struct{}, 1), tallyCgroups: opts.Tally && opts.TallyCgroups, limits: map[tcpstateCounter]uint32{
		tcpstateCounterCOUNT_SOCKS_FULL:        spec.Maps[tcpstateMapSocks].MaxEntries,
		tcpstateCounterCOUNT_TW_FULL:           spec.Maps[tcpstateMapTws].MaxEntries,
		tcpstateCounterCOUNT_ORPHANS_FULL:      spec.Maps[tcpstateMapOrphans].MaxEntries,
		tcpstateCounterCOUNT_CLOSED_FULL:       spec.Maps[tcpstateMapClosed].MaxEntries,
		tcpstateCounterCOUNT_CGROUP_HISTS_FULL: spec.Maps[tcpstateMapCgroupHists].MaxEntries,
	}}
	if opts.Tally {
		// Nothing goes through the ring: the smallest there is.
		spec.Maps[tcpstateMapEvents].MaxEntries = uint32(os.Getpagesize())
		// Owners matter to tally mode only for the owner filters, and the
		// final tuple only for the tuple filters.
		if needSeeds == nil {
			t.skip = append(t.skip, ownerHooks...)
		}
		if !opts.IPv4 && !opts.IPv6 && len(opts.LPorts)+len(opts.RPorts)+len(opts.LAddrs)+len(opts.RAddrs) == 0 {
			t.skip = append(t.skip, tupleHooks...)
		}
	}
	t.timewait = !opts.Raw
	switch err := fexitAllowed(kernelTypes); {
	case opts.Hooks == HooksTracepoint || kernelTypes != nil || slices.Contains(t.skip, tcpstateProgAcceptExit):
		t.skip = append(t.skip, ownerHooks...)
	case err == nil:
		t.fexit = true
	case opts.Hooks == HooksFentry:
		return nil, fmt.Errorf("--hooks fentry: this kernel refuses fexit programs: %w", err)
	default:
		t.skip = append(t.skip, ownerHooks...)
	}

	// tp_btf is cheaper but needs the running kernel's own BTF; a BTF file
	// given by hand only serves CO-RE, so then use the classic tracepoints.
	if kernelTypes == nil {
		err = t.load(spec, nil, true)
	} else if !opts.Raw {
		t.notices = append(t.notices, "TIME_WAIT is not followed (as with --raw): it needs the kernel's own BTF")
	}
	if kernelTypes != nil || err != nil {
		if err != nil {
			t.notices = append(t.notices, fmt.Sprintf("using classic tracepoints, TIME_WAIT not followed: %v", err))
		}
		t.timewait = false
		if err2 := t.load(spec, kernelTypes, false); err2 != nil {
			if err == nil {
				err = err2
			}
			return nil, err
		}
	}
	if err := t.fillFilterMaps(&opts); err != nil {
		t.Close()
		return nil, err
	}
	if t.unseeded, err = seedOwners(t.maps.Seeds, <-seeds); err != nil {
		t.Close()
		return nil, err
	}
	if n := t.reasonNotice(); n != "" {
		t.notices = append(t.notices, n)
	}
	if err := t.attach(); err != nil {
		t.Close()
		return nil, err
	}
	t.reader, err = ringbuf.NewReader(t.maps.Events)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	t.dec = newDecoder(bootWall())
	// The first run of any program detects BPF_PROG_RUN's support, which
	// loads a program: a descriptor. Done now, the polls need none later,
	// when a process out of descriptors (a metrics server flooded with
	// connections) could not give one.
	for _, name := range []string{tcpstateProgPollTimewait, tcpstateProgSweepTimewait, tcpstateProgSweepSocks} {
		if prog := t.progs[name]; prog != nil {
			if _, err := prog.Run(&ebpf.RunOptions{}); err != nil {
				t.Close()
				return nil, fmt.Errorf("run %s: %w", name, err)
			}
			break
		}
	}
	return t, nil
}

// load loads the maps and one flavour of the programs.
func (t *Tracer) load(spec *ebpf.CollectionSpec, kernelTypes *btf.Spec, useBTF bool) error {
	spec = spec.Copy()
	for name, ps := range spec.Programs {
		// Programs not attached are not loaded either: the verifier's
		// time is most of the start-up.
		if useBTF && slices.Contains(classicOnly, name) || !useBTF && ps.Type != ebpf.TracePoint || slices.Contains(t.skip, name) {
			delete(spec.Programs, name)
		}
	}
	if t.hollow {
		for _, ps := range spec.Programs {
			ps.Instructions = asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
		}
	}
	// Classic tracepoints cannot follow TIME_WAIT (they cannot make a
	// socket's cookie, which pairs it with its timewait socket): the BPF
	// side must not try, nor count what it misses.
	if err := setVariable(spec, tcpstateVarFollowTw, useBTF && t.timewait); err != nil {
		return err
	}
	if err := setVariable(spec, tcpstateVarLateResets, useBTF && t.tally); err != nil {
		return err
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernelTypes}})
	if err != nil {
		return loadError(err)
	}
	var maps tcpstateMaps
	if err := coll.Assign(&maps); err != nil {
		coll.Close()
		return fmt.Errorf("BPF object: %w", err)
	}
	t.pollNowJ, t.pollNextDueJ = coll.Variables[tcpstateVarPollNowJ], coll.Variables[tcpstateVarPollNextDueJ]
	t.twsLive = coll.Variables[tcpstateVarTwsLive]
	coll.Maps = nil // assigned: closed with t.maps
	t.sections = map[string]string{}
	for name, ps := range spec.Programs {
		t.sections[name] = ps.SectionName
	}
	t.maps, t.progs, t.btf = maps, coll.Programs, useBTF
	return nil
}

// attach hooks the loaded programs where their sections say, the
// set_state ones first (their nested twin relies on no order, though).
func (t *Tracer) attach() error {
	t.timewait = t.timewait && t.btf
	t.fexit = t.fexit && t.progs[tcpstateProgAcceptExit] != nil
	names := slices.Sorted(maps.Keys(t.progs))
	first := func(name string) int {
		if strings.HasPrefix(name, "set_state") {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(names, func(a, b string) int { return cmp.Compare(first(a), first(b)) })
	for _, name := range names {
		prog := t.progs[name]
		if slices.Contains(runOnly, name) {
			continue
		}
		var l link.Link
		var err error
		if prog.Type() == ebpf.TracePoint {
			group, event, _ := strings.Cut(strings.TrimPrefix(t.sections[name], "tracepoint/"), "/")
			l, err = link.Tracepoint(group, event, prog, nil)
		} else {
			l, err = link.AttachTracing(link.TracingOptions{Program: prog})
		}
		if err != nil {
			return fmt.Errorf("attach %s (%s): %w", name, t.sections[name], err)
		}
		t.links = append(t.links, l)
	}
	return nil
}

// Run reads events until ctx is done or the handler fails. Events already
// queued when ctx ends are still delivered.
func (t *Tracer) Run(ctx context.Context, h Handler) error {
	var rec ringbuf.Record
	var ev Event
	draining := false
	lastTick := time.Now()
	// Polls run beside the reader: one can take tens of milliseconds, in
	// which a burst would fill the ring.
	pollCtx, stopPolls := context.WithCancel(ctx)
	pollErr := make(chan error, 1)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		pollErr <- t.pollLoop(pollCtx)
	}()
	defer func() {
		stopPolls()
		<-polled
	}()
	lastYield := lastTick
	tick := func(now time.Time) error {
		lastTick = now
		select {
		case err := <-pollErr:
			if err != nil {
				return err
			}
		default:
		}
		return h.Tick()
	}
	// busy is set while records keep coming: waits are then cut in
	// slices of maxBlock with a yield between them. An idle reader
	// waits for the next tick at once, which costs least when nothing
	// happens.
	busy := false
	records, recordsBefore := 0, 0 // read in all, and before this wait
	// wait sets the reader's deadline: the next tick, but when busy at
	// most maxBlock from now.
	wait := func(now time.Time) {
		d := lastTick.Add(PollInterval)
		if slice := now.Add(maxBlock); busy && slice.Before(d) {
			d = slice
		}
		t.reader.SetDeadline(d)
	}
	wait(lastTick)
	for n := 0; ; n++ {
		err := t.reader.ReadInto(&rec)
		switch {
		case err == nil:
			records++
			if err := t.dec.decode(rec.RawSample, &ev); err != nil {
				return err
			}
			if err := t.deliver(h, &ev); err != nil {
				return err
			}
			if n%256 != 0 {
				continue
			}
			// A busy ring never runs dry: tick and look at ctx anyway.
			now := time.Now()
			if now.Sub(lastYield) >= maxBlock {
				lastYield = now
				runtime.Gosched()
			}
			if now.Sub(lastTick) >= PollInterval {
				if err := tick(now); err != nil {
					return err
				}
			}
			if !draining && ctx.Err() != nil {
				draining = true
				t.reader.SetDeadline(time.Now())
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			busy, recordsBefore = records != recordsBefore, records
			if busy {
				runtime.Gosched()
			}
			now := time.Now()
			lastYield = now
			// The wait has a resolution of 1 ms: a tick due sooner is
			// due now, or this would spin.
			if !draining && ctx.Err() == nil && lastTick.Add(PollInterval).Sub(now) >= time.Millisecond {
				wait(now)
				continue
			}
			if err := tick(now); err != nil {
				return err
			}
			if draining {
				return h.Tick()
			}
			if ctx.Err() != nil {
				// One more pass to pick up what is queued right now.
				draining = true
				t.reader.SetDeadline(time.Now())
				continue
			}
			wait(lastTick)
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
	}
}

// maxBlock bounds one wait for the ring buffer while records keep coming,
// and Run then yields (Gosched) at least this often. The Go runtime
// preempts a goroutine that ran 10 ms without yielding, taking its
// processor if it is in a system call (the wait), and its sysmon thread
// then polls every 20 µs for a while: under load that cost more CPU than
// the events themselves. Idle, the slices and yields would cost more than
// they save.
const maxBlock = 9 * time.Millisecond

// deliver hands ev to h, except for the BPF side's bookkeeping records.
func (t *Tracer) deliver(h Handler, ev *Event) error {
	switch {
	case ev.flags == evPollNote:
		t.wakePolls()
		return nil
	case ev.flags&evPath != 0:
		ev.Note = NoteNone
		return h.Event(ev)
	case ev.flags&(evResetNote|evOrphanNote|evNoSockNote) != 0:
		switch {
		case ev.flags&evOrphanNote != 0:
			ev.Note = NoteOrphan
		case ev.flags&evNoSockNote != 0:
			ev.Note = NoteNoSocket
		default:
			ev.Note = NoteLateReset
		}
		if n, ok := h.(Noter); ok {
			return n.Note(ev)
		}
		return nil
	}
	ev.Note = NoteNone
	return h.Event(ev)
}

// pollLoop runs, until ctx ends, the BPF programs that look at sockets
// rather than wait for the kernel to show them:
//
//   - poll_timewait ends the followed TIME_WAITs whose timer has run, or
//     that a RST or a namespace's removal ended, and notices orphans
//     turned TIME_WAIT (and, in tally mode, ends connections that waited
//     long enough for a late RST). Its cost is that of the sockets due
//     (and of the orphans): it runs every PollInterval while any is
//     followed, at once again while more are due than one run looks at,
//     and ever less often, up to pollIdleWait apart, while none is, until
//     the BPF side says one is followed again (wakePolls).
//   - sweep_socks checks every followed socket against the kernel's and
//     counts those the tracepoint stopped showing (see Shortfalls);
//     sweep_timewait finds the TIME_WAITs that ended before their timer
//     with no new socket on their tuple (a RST, a namespace removed).
//
// Each waits pollCostFactor times the CPU time it last took, so that
// neither takes more than 1% of a CPU, within bounds of its own.
func (t *Tracer) pollLoop(ctx context.Context) error {
	polls := t.timewait || t.tally && t.btf
	sweep := t.progs[tcpstateProgSweepSocks]
	if !polls && sweep == nil {
		return nil
	}
	// The cost is the CPU time, not the wall time: on a loaded machine a
	// poll preempted for a second would otherwise put the next off by
	// minutes.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	run := func(prog *ebpf.Program) (uint32, time.Duration, error) {
		start := threadCPU()
		ret, err := prog.Run(&ebpf.RunOptions{})
		if errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			// Short of memory for a moment: what this run would have
			// ended or found, the next one does, a PollInterval later.
			return uint32(tcpstatePollResultPOLL_AGAIN), 0, nil
		}
		return ret, pollCostFactor * (threadCPU() - start), err
	}
	now := time.Now()
	var jiffies jiffyClock
	nextPoll, nextSweep := now.Add(PollInterval), now.Add(sweepMinWait)
	idleWait := PollInterval
	timer := time.NewTimer(PollInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			// A last check of the followed sockets, so that those gone
			// unseen since the last one are counted in the summary.
			if sweep != nil {
				if _, _, err := run(sweep); err != nil {
					return fmt.Errorf("check followed sockets: %w", err)
				}
			}
			return nil
		case <-timer.C:
		case <-t.pollWake:
			nextPoll, idleWait = time.Now(), PollInterval
		}
		now := time.Now()
		if polls && !now.Before(nextPoll) {
			var res uint32
			var wait time.Duration
			for range maxPollRuns {
				var err error
				if res, wait, err = run(t.progs[tcpstateProgPollTimewait]); err != nil {
					return fmt.Errorf("poll timewait sockets: %w", err)
				}
				if res != uint32(tcpstatePollResultPOLL_MORE) {
					break
				}
			}
			switch res {
			case uint32(tcpstatePollResultPOLL_IDLE):
				idleWait = min(2*idleWait, pollIdleWait)
			case uint32(tcpstatePollResultPOLL_SLEEP):
				// Until the first queued TIME_WAIT is due; the BPF side
				// wakes the polls if an orphan comes meanwhile.
				idleWait = min(max(jiffies.until(t.pollNowJ, t.pollNextDueJ, now), PollInterval), pollIdleWait)
			default:
				idleWait = PollInterval
			}
			nextPoll = now.Add(min(max(idleWait, wait), pollMaxWait))
		}
		if sweep != nil && !now.Before(nextSweep) {
			_, wait, err := run(sweep)
			if err != nil {
				return fmt.Errorf("check followed sockets: %w", err)
			}
			if t.timewait {
				_, twWait, err := run(t.progs[tcpstateProgSweepTimewait])
				if err != nil {
					return fmt.Errorf("check followed timewait sockets: %w", err)
				}
				wait += twWait
			}
			nextSweep = now.Add(min(max(sweepMinWait, wait), sweepMaxWait))
		}
		next := nextSweep
		if polls && nextPoll.Before(next) || sweep == nil {
			next = nextPoll
		}
		timer.Reset(time.Until(next)) // (since Go 1.23 no stale tick survives a Reset)
	}
}

// maxPollRuns bounds the runs of poll_timewait in one poll while more
// TIME_WAITs are due than one run looks at (TW_POLL_BATCH): a burst of
// 65,536 ends that came due at once.
const maxPollRuns = 8

// jiffyClock turns the kernel's jiffies into time: the length of a jiffy
// (1/CONFIG_HZ) is measured from two polls at least a second apart, and
// taken as 1 ms (HZ 1000, the shortest: never a sleep too long) until then.
type jiffyClock struct {
	firstJ uint64
	firstT time.Time
	jiffy  time.Duration
}

// until is how long from now (when nowJ was read) until jiffy dueJ.
func (c *jiffyClock) until(nowJ, dueJ *ebpf.Variable, now time.Time) time.Duration {
	var j, due uint64
	if nowJ == nil || dueJ == nil || nowJ.Get(&j) != nil || dueJ.Get(&due) != nil || due <= j {
		return 0
	}
	if c.firstJ == 0 || j < c.firstJ {
		c.firstJ, c.firstT = j, now
	} else if c.jiffy == 0 && j-c.firstJ >= 100 && now.Sub(c.firstT) >= time.Second {
		c.jiffy = snapJiffy(now.Sub(c.firstT) / time.Duration(j-c.firstJ))
	}
	jiffy := cmp.Or(c.jiffy, time.Millisecond)
	return time.Duration(due-j+1) * jiffy
}

// snapJiffy rounds a measured jiffy to that of the nearest CONFIG_HZ.
func snapJiffy(d time.Duration) time.Duration {
	best := d
	for _, hz := range []int64{100, 250, 300, 1000} {
		j := time.Second / time.Duration(hz)
		if diff := (d - j).Abs(); diff < j/20 && (best == d || diff < (d-best).Abs()) {
			best = j
		}
	}
	return best
}

// wakePolls has the timewait sockets polled now: one is followed again.
func (t *Tracer) wakePolls() {
	select {
	case t.pollWake <- struct{}{}:
	default:
	}
}

// threadCPU is the CPU time this thread has used.
func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

const pollCostFactor = 100

// pollMaxWait bounds the wait, so that a TIME_WAIT's end is seen within
// about a second even during a burst of thousands of orphans (a poll of
// 10,000 orphans takes 30 ms: up to 3% of a CPU while they last).
const pollMaxWait = time.Second

// pollIdleWait bounds the wait between polls while no orphan is followed.
const pollIdleWait = time.Second

// sweepMinWait and sweepMaxWait bound the wait between two checks of the
// followed sockets: a walk of the owner table's million buckets takes
// about 19 ms even when it is empty (0.2% of a CPU every 10 s), more
// with many sockets.
const (
	sweepMinWait = 10 * time.Second
	sweepMaxWait = time.Minute
)

// Notices are one-line remarks for the user about what this kernel does
// not allow (e.g. TIME_WAIT is not followed).
func (t *Tracer) Notices() []string { return t.notices }

// Hooks says which choice of Options.Hooks runs: HooksFentry when an
// accepted socket is owned from accept() on, HooksTracepoint when from its
// first close() or shutdown() on.
func (t *Tracer) Hooks() Hooks {
	if t.fexit {
		return HooksFentry
	}
	return HooksTracepoint
}

func monoNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// Unseeded returns how many sockets older than the tracer will show no
// owner because there were too many to record at start-up.
func (t *Tracer) Unseeded() int { return t.unseeded }

// Lost returns how many events were lost: dropped by the BPF side because
// the ring buffer was full, or never seen because the kernel skipped a
// program (it does not run one that is already running on the CPU, as when
// an interrupt arrives during it).
func (t *Tracer) Lost() (uint64, error) {
	counts, err := t.counters()
	if err != nil {
		return 0, err
	}
	// The kernel counts a miss for setState also when setStateNested
	// handled the transition instead.
	sum := counts[tcpstateCounterCOUNT_LOST] - counts[tcpstateCounterCOUNT_NESTED]
	for _, prog := range t.progs {
		if st, err := prog.Stats(); err == nil {
			sum += st.RecursionMisses
		}
	}
	return sum, nil
}

// Unseen counts the followed sockets that the kernel's tracepoint stopped
// showing, as the periodic check of them found: gone without a CLOSE
// shown (ends), or in another state than the last one shown (moved).
func (t *Tracer) Unseen() (ends, moved uint64, err error) {
	counts, err := t.counters()
	if err != nil {
		return 0, 0, err
	}
	return counts[tcpstateCounterCOUNT_UNSEEN_END], counts[tcpstateCounterCOUNT_UNSEEN_STATE], nil
}

// NoSocketResets counts the RSTs sent for segments that found no socket
// (that passed the filters), and of those the ones not recorded one by
// one (rate limit); Linux 6.9 and later report them.
func (t *Tracer) NoSocketResets() (seen, suppressed uint64, err error) {
	counts, err := t.counters()
	if err != nil {
		return 0, 0, err
	}
	return counts[tcpstateCounterCOUNT_NOSOCK_SEEN], counts[tcpstateCounterCOUNT_NOSOCK_SUPPRESSED], nil
}

// Shortfall is one kind of thing the tracer could not follow, and how
// often that happened so far.
type Shortfall struct {
	Count uint64
	What  string // e.g. "sockets shown without owner or age (owner table full: 1048576)"
}

// TimeWaitsLeft looks now for followed timewait sockets (TIME_WAIT, or
// an orphan's FIN_WAIT2) that ended before their timer, shows their ends,
// and returns how many are still followed: those whose ends are still to
// be shown. A session whose namespace is gone waits for its TIME_WAITs,
// which the kernel removes with it, a moment later.
func (t *Tracer) TimeWaitsLeft() (uint64, error) {
	sweep := t.progs[tcpstateProgSweepTimewait]
	if !t.timewait || sweep == nil || t.twsLive == nil {
		return 0, nil
	}
	if _, err := sweep.Run(&ebpf.RunOptions{}); err != nil {
		return 0, fmt.Errorf("check followed timewait sockets: %w", err)
	}
	var n uint64
	if err := t.twsLive.Get(&n); err != nil {
		return 0, fmt.Errorf("read followed timewait sockets: %w", err)
	}
	return n, nil
}

// Shortfalls returns what the tracer could not follow besides lost
// events, each with a count that only grows; zero counts included, in a
// fixed order.
func (t *Tracer) Shortfalls() ([]Shortfall, error) {
	counts, err := t.counters()
	if err != nil {
		return nil, err
	}
	full := func(c tcpstateCounter, what, table string) Shortfall {
		return Shortfall{counts[c], fmt.Sprintf("%s (%s table full: %d entries)", what, table, t.limits[c])}
	}
	return []Shortfall{
		full(tcpstateCounterCOUNT_SOCKS_FULL, "sockets shown without owner or time in state", "owner"),
		full(tcpstateCounterCOUNT_TW_FULL, "TIME_WAITs not followed (shown as the kernel reports them)", "timewait"),
		{counts[tcpstateCounterCOUNT_TW_UNFOUND], "TIME_WAITs not followed: their timewait socket was not found in its hash chain (shown as the kernel reports them)"},
		{counts[tcpstateCounterCOUNT_TW_EARLY], "TIME_WAITs ended before their timer with no new connection on their 4-tuple (a RST, their namespace removed): the end is shown when found, up to 10 s late"},
		full(tcpstateCounterCOUNT_ORPHANS_FULL, "orphaned FIN_WAIT2 sockets whose TIME_WAIT is seen only when their timer runs", "orphan"),
		{counts[tcpstateCounterCOUNT_TW_UNKNOWN], "sockets older than tcpstate closed from FIN_WAIT1/FIN_WAIT2/CLOSING: a TIME_WAIT they left is not followed"},
		full(tcpstateCounterCOUNT_CLOSED_FULL, "connection ends counted before the RST that may follow (closed_by may say local, not reset)", "late-reset"),
		full(tcpstateCounterCOUNT_CGROUP_HISTS_FULL, "durations of sockets of new cgroups left out of the histograms by pod", "per-cgroup histogram"),
		{counts[tcpstateCounterCOUNT_UNSEEN_END], "sockets found gone whose end the kernel's tracepoint never showed (it ran no tracing program for it)"},
		{counts[tcpstateCounterCOUNT_UNSEEN_STATE], "sockets found in another state than the kernel's tracepoint last showed (a transition it ran no tracing program for)"},
		{counts[tcpstateCounterCOUNT_PATH_LONG], "connections with more states than a path keeps (their last state replaced the one before)"},
		{counts[tcpstateCounterCOUNT_NOSOCK_SUPPRESSED], "RSTs sent for segments that found no socket not recorded one by one (more than 100 a second per CPU): counted on the next record"},
	}, nil
}

// counters sums the BPF side's per-CPU counters.
func (t *Tracer) counters() ([tcpstateCounterNR_COUNTERS]uint64, error) {
	var out [tcpstateCounterNR_COUNTERS]uint64
	var perCPU []uint64
	for c := range tcpstateCounterNR_COUNTERS {
		if err := t.maps.Counters.Lookup(uint32(c), &perCPU); err != nil {
			return out, fmt.Errorf("read BPF counters: %w", err)
		}
		for _, n := range perCPU {
			out[c] += n
		}
	}
	return out, nil
}

// Close detaches and unloads everything; nothing stays in the kernel.
func (t *Tracer) Close() error {
	var errs []error
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	for _, prog := range t.progs {
		errs = append(errs, prog.Close())
	}
	errs = append(errs, t.maps.Close())
	return errors.Join(errs...)
}

// bootWall returns the wall clock at CLOCK_MONOTONIC zero, the base of
// bpf_ktime_get_ns, so one addition turns a BPF timestamp into wall time.
func bootWall() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now().UnixNano() - ts.Nano()
}
