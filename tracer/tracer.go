// SPDX-License-Identifier: Apache-2.0

// Package tracer loads the BPF programs that watch TCP state transitions and
// hands each transition to the caller as an Event. It is the only package
// that talks to the kernel's BPF interface.
package tracer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
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
	IPv4, IPv6 bool // both or neither: either family
	PIDs       []uint32
	Comms      []string
	LPorts     []uint16
	RPorts     []uint16
	LAddrs     []netip.Prefix
	RAddrs     []netip.Prefix
	States     []State // transitions into or out of these states
	CgroupID   uint64  // this cgroup v2 or below it
	NetNS      uint32  // network namespace inode
	// KernelBTF is a BTF file describing the running kernel, for kernels
	// that do not expose /sys/kernel/btf/vmlinux.
	KernelBTF string
}

// Handler receives what the tracer reads.
type Handler interface {
	// Event is called for every transition; ev is reused afterwards.
	Event(ev *Event) error
	// Tick is called at least every PollInterval, also when idle: the
	// time to flush buffered output.
	Tick() error
}

// programs are the loaded programs. The state and retransmit hooks come in
// two flavours: tp_btf and classic tracepoint.
type programs struct {
	setState, retransmit *ebpf.Program
	syscalls             syscallPrograms
}

type syscallPrograms struct {
	ConnectExit *ebpf.Program `ebpf:"connect_exit"`
	Accept4Exit *ebpf.Program `ebpf:"accept4_exit"`
	AcceptExit  *ebpf.Program `ebpf:"accept_exit"`
}

type btfPrograms struct {
	SetState   *ebpf.Program `ebpf:"set_state_btf"`
	Retransmit *ebpf.Program `ebpf:"retransmit_btf"`
}

type tracepointPrograms struct {
	SetState   *ebpf.Program `ebpf:"set_state_tp"`
	Retransmit *ebpf.Program `ebpf:"retransmit_tp"`
}

func (p *programs) Close() error {
	for _, prog := range []*ebpf.Program{p.setState, p.retransmit, p.syscalls.ConnectExit, p.syscalls.Accept4Exit, p.syscalls.AcceptExit} {
		if prog != nil {
			prog.Close()
		}
	}
	return nil
}

// Tracer is a loaded and attached set of BPF programs.
type Tracer struct {
	maps  tcpstateMaps
	progs programs
	btf   bool // progs are the tp_btf flavour
	// unseeded counts sockets older than the tracer whose owner could not
	// be recorded (the seeds map was full).
	unseeded int
	links    []link.Link
	reader   *ringbuf.Reader
	dec      *decoder
}

// New checks privileges and kernel support, loads the BPF programs with the
// filters of opts and attaches them. Close releases everything.
func New(opts Options) (*Tracer, error) {
	if err := checkPrivileges(); err != nil {
		return nil, err
	}
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

	t := &Tracer{}
	// tp_btf is cheaper but needs the running kernel's own BTF; a BTF file
	// given by hand only serves CO-RE, so then use the classic tracepoints.
	if kernelTypes == nil {
		err = t.load(spec, nil, true)
	}
	if kernelTypes != nil || err != nil {
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
	if t.unseeded, err = seedOwners(t.maps.Seeds); err != nil {
		t.Close()
		return nil, err
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
	return t, nil
}

// load loads the maps and one flavour of the programs.
func (t *Tracer) load(spec *ebpf.CollectionSpec, kernelTypes *btf.Spec, useBTF bool) error {
	opts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernelTypes}}
	var maps tcpstateMaps
	var progs programs
	var err error
	if useBTF {
		var hooks btfPrograms
		err = spec.LoadAndAssign(&struct {
			*tcpstateMaps
			*syscallPrograms
			*btfPrograms
		}{&maps, &progs.syscalls, &hooks}, opts)
		progs.setState, progs.retransmit = hooks.SetState, hooks.Retransmit
	} else {
		var hooks tracepointPrograms
		err = spec.LoadAndAssign(&struct {
			*tcpstateMaps
			*syscallPrograms
			*tracepointPrograms
		}{&maps, &progs.syscalls, &hooks}, opts)
		progs.setState, progs.retransmit = hooks.SetState, hooks.Retransmit
	}
	if err != nil {
		return loadError(err)
	}
	t.maps, t.progs, t.btf = maps, progs, useBTF
	return nil
}

// attach hooks the loaded programs to their tracepoints.
func (t *Tracer) attach() error {
	p := &t.progs
	if t.btf {
		for _, prog := range []*ebpf.Program{p.setState, p.retransmit} {
			l, err := link.AttachTracing(link.TracingOptions{Program: prog})
			if err != nil {
				return fmt.Errorf("attach %s: %w", prog, err)
			}
			t.links = append(t.links, l)
		}
	} else {
		if err := t.tracepoint("sock", "inet_sock_set_state", p.setState); err != nil {
			return err
		}
		if err := t.tracepoint("tcp", "tcp_retransmit_skb", p.retransmit); err != nil {
			return err
		}
	}
	if err := t.tracepoint("syscalls", "sys_exit_connect", p.syscalls.ConnectExit); err != nil {
		return err
	}
	if err := t.tracepoint("syscalls", "sys_exit_accept4", p.syscalls.Accept4Exit); err != nil {
		return err
	}
	return t.tracepoint("syscalls", "sys_exit_accept", p.syscalls.AcceptExit)
}

func (t *Tracer) tracepoint(group, name string, prog *ebpf.Program) error {
	l, err := link.Tracepoint(group, name, prog, nil)
	if err != nil {
		return fmt.Errorf("attach tracepoint %s/%s: %w", group, name, err)
	}
	t.links = append(t.links, l)
	return nil
}

// Run reads events until ctx is done or the handler fails. Events already
// queued when ctx ends are still delivered.
func (t *Tracer) Run(ctx context.Context, h Handler) error {
	var rec ringbuf.Record
	var ev Event
	draining := false
	lastTick := time.Now()
	t.reader.SetDeadline(lastTick.Add(PollInterval))
	for n := 0; ; n++ {
		err := t.reader.ReadInto(&rec)
		switch {
		case err == nil:
			if err := t.dec.decode(rec.RawSample, &ev); err != nil {
				return err
			}
			if err := h.Event(&ev); err != nil {
				return err
			}
			if n%256 != 0 {
				continue
			}
			// A busy ring never runs dry: tick and look at ctx anyway.
			if now := time.Now(); now.Sub(lastTick) >= PollInterval {
				lastTick = now
				if err := h.Tick(); err != nil {
					return err
				}
			}
			if !draining && ctx.Err() != nil {
				draining = true
				t.reader.SetDeadline(time.Now())
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			lastTick = time.Now()
			if err := h.Tick(); err != nil {
				return err
			}
			if draining {
				return nil
			}
			if ctx.Err() != nil {
				// One more pass to pick up what is queued right now.
				draining = true
				t.reader.SetDeadline(time.Now())
				continue
			}
			t.reader.SetDeadline(lastTick.Add(PollInterval))
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
	}
}

// Unseeded returns how many sockets older than the tracer will show no
// owner because there were too many to record at start-up.
func (t *Tracer) Unseeded() int { return t.unseeded }

// Lost returns how many events the kernel dropped because the ring buffer
// was full.
func (t *Tracer) Lost() (uint64, error) {
	var perCPU []uint64
	if err := t.maps.Lost.Lookup(uint32(0), &perCPU); err != nil {
		return 0, fmt.Errorf("read lost-events counter: %w", err)
	}
	var sum uint64
	for _, n := range perCPU {
		sum += n
	}
	return sum, nil
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
	errs = append(errs, t.progs.Close(), t.maps.Close())
	return errors.Join(errs...)
}

// bootWall returns the wall clock at CLOCK_MONOTONIC zero, the base of
// bpf_ktime_get_ns, so one addition turns a BPF timestamp into wall time.
func bootWall() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now().UnixNano() - ts.Nano()
}
