// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// Floor is the least a tracer of transitions can attach: one tp_btf program
// on sock/inet_sock_set_state that adds 1 to a per-CPU counter. The
// benchmark measures it as the floor of any tracer's cost.
type Floor struct {
	counter *ebpf.Map
	prog    *ebpf.Program
	link    link.Link
}

// NewFloor loads and attaches the floor program.
func NewFloor() (*Floor, error) {
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	f := &Floor{}
	var err error
	f.counter, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("floor counter: %w", err)
	}
	f.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:       "floor",
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceRawTp,
		AttachTo:   "inet_sock_set_state",
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, f.counter.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
	})
	if err != nil {
		f.Close()
		return nil, loadError(err)
	}
	if f.link, err = link.AttachTracing(link.TracingOptions{Program: f.prog}); err != nil {
		f.Close()
		return nil, fmt.Errorf("attach floor program: %w", err)
	}
	return f, nil
}

// Count is how many transitions the floor program saw.
func (f *Floor) Count() (uint64, error) {
	var perCPU []uint64
	if err := f.counter.Lookup(uint32(0), &perCPU); err != nil {
		return 0, fmt.Errorf("read floor counter: %w", err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// Close detaches and unloads it.
func (f *Floor) Close() error {
	var errs []error
	if f.link != nil {
		errs = append(errs, f.link.Close())
	}
	if f.prog != nil {
		errs = append(errs, f.prog.Close())
	}
	if f.counter != nil {
		errs = append(errs, f.counter.Close())
	}
	return errors.Join(errs...)
}
