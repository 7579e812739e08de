// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// ErrPrivileges means the process may not load BPF programs.
var ErrPrivileges = errors.New("tcpstate needs root (or the CAP_BPF and CAP_PERFMON capabilities) to load its BPF programs: run it with sudo")

// CheckPrivileges fails early, with a sentence a person can act on, rather
// than with an EPERM from deep inside the loader. New checks first; a
// caller may check before privileged work of its own for the tracer.
func CheckPrivileges() error {
	caps, ok := EffectiveCaps()
	if !ok {
		return nil // cannot tell; let the loader decide
	}
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	if has(unix.CAP_SYS_ADMIN) || (has(unix.CAP_BPF) && has(unix.CAP_PERFMON)) {
		return nil
	}
	return ErrPrivileges
}

// EffectiveCaps returns the effective capability set of this process (bit
// n is capability n, as unix.CAP_*), from capget(2); ok is false when it
// cannot be read.
func EffectiveCaps() (caps uint64, ok bool) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3: two 32-bit halves
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, false
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, true
}

// kernelBTF returns the BTF given with --kernel-btf, or nil when the kernel
// has its own.
func kernelBTF(path string) (*btf.Spec, error) {
	if path == "" {
		if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
			return nil, errors.New("this kernel exposes no BTF type information (/sys/kernel/btf/vmlinux is missing): pass --kernel-btf with a BTF file for this kernel (e.g. from BTFHub)")
		}
		return nil, nil
	}
	spec, err := btf.LoadSpec(path)
	if err != nil {
		return nil, fmt.Errorf("read --kernel-btf %s: %w", path, err)
	}
	return spec, nil
}

// ensureTracefs mounts tracefs when it is missing: attaching to a classic
// tracepoint needs its event ids.
func ensureTracefs() error {
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(dir + "/events"); err == nil {
			return nil
		}
	}
	if err := unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it failed (%w): run 'mount -t tracefs nodev /sys/kernel/tracing'", err)
	}
	return nil
}

// loadError turns loader failures into something a person can act on.
func loadError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		// The tail of the log says why; the whole log is thousands of lines.
		return fmt.Errorf("the kernel's verifier rejected the BPF program: %-10v", ve)
	}
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (%v)", ErrPrivileges, err)
	}
	return fmt.Errorf("load BPF programs: %w", err)
}

// setFilters writes the scalar filters into the BPF object's constants.
func setFilters(spec *ebpf.CollectionSpec, o *Options) error {
	var family uint16
	switch {
	case o.IPv4 && !o.IPv6:
		family = unix.AF_INET
	case o.IPv6 && !o.IPv4:
		family = unix.AF_INET6
	}
	var states uint32
	for _, s := range o.States {
		states |= 1 << s
	}
	if len(o.PIDs) > MaxPIDs {
		return fmt.Errorf("at most %d pids can be filtered", MaxPIDs)
	}
	if len(o.Comms) > MaxComms {
		return fmt.Errorf("at most %d comms can be filtered", MaxComms)
	}
	if len(o.LAddrs) > MaxPrefixes || len(o.RAddrs) > MaxPrefixes {
		return fmt.Errorf("at most %d addresses can be filtered", MaxPrefixes)
	}
	var comms [MaxComms][commLength]byte
	for i, c := range o.Comms {
		copy(comms[i][:commLength-1], c)
	}
	var vars tcpstateVariableSpecs
	if err := spec.Assign(&vars); err != nil {
		return fmt.Errorf("BPF object: %w", err)
	}
	for _, v := range []struct {
		spec  *ebpf.VariableSpec
		value any
	}{
		{vars.FilterFamily, family},
		{vars.FilterStates, states},
		{vars.FilterNetns, o.NetNS},
		{vars.FilterNetnsCookie, o.NetNSCookie},
		{vars.FilterCgroup, o.CgroupID},
		{vars.FilterPid, len(o.PIDs) > 0},
		{vars.FilterLport, len(o.LPorts) > 0},
		{vars.FilterRport, len(o.RPorts) > 0},
		{vars.FilterLaddr, len(o.LAddrs) > 0},
		{vars.FilterRaddr, len(o.RAddrs) > 0},
		{vars.FilterNcomms, uint32(len(o.Comms))},
		{vars.FilterComms, comms},
		{vars.WakeupBytes, uint64(wakeupBytes)},
		{vars.TallyMode, o.Tally},
		{vars.LifeMode, o.Life},
		{vars.TallyCgroups, o.Tally && o.TallyCgroups},
	} {
		if err := v.spec.Set(v.value); err != nil {
			return fmt.Errorf("set %s: %w", v.spec.Name, err)
		}
	}
	return setTallyBounds(&vars)
}

// setVariable sets one of the BPF object's constants that is known only
// once the flavour is chosen: follow_tw (TIME_WAIT followed: tp_btf and not
// --raw) and late_resets (the tp_btf flavour's reset hooks and poll run, so
// tally mode may wait for a late RST).
func setVariable(spec *ebpf.CollectionSpec, name string, value any) error {
	v, ok := spec.Variables[name]
	if !ok {
		return fmt.Errorf("BPF object: no variable %s", name)
	}
	if err := v.Set(value); err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	return nil
}

// fillFilterMaps writes the list filters into their maps.
func (t *Tracer) fillFilterMaps(o *Options) error {
	for _, pid := range o.PIDs {
		if err := t.maps.Pids.Put(pid, uint8(1)); err != nil {
			return fmt.Errorf("set pid filter: %w", err)
		}
	}
	if err := putPorts(t.maps.Lports, o.LPorts); err != nil {
		return err
	}
	if err := putPorts(t.maps.Rports, o.RPorts); err != nil {
		return err
	}
	if err := putPrefixes(t.maps.Laddrs, o.LAddrs); err != nil {
		return err
	}
	return putPrefixes(t.maps.Raddrs, o.RAddrs)
}

func putPorts(m *ebpf.Map, ports []uint16) error {
	words := map[uint32]uint64{}
	for _, p := range ports {
		words[uint32(p)>>6] |= 1 << (p & 63)
	}
	for idx, w := range words {
		if err := m.Put(idx, w); err != nil {
			return fmt.Errorf("set port filter: %w", err)
		}
	}
	return nil
}

func putPrefixes(m *ebpf.Map, prefixes []netip.Prefix) error {
	for _, p := range prefixes {
		key := tcpstateLpmKey{Prefixlen: uint32(p.Bits())}
		addr := p.Addr()
		if addr.Is4() {
			key.Prefixlen += 96 // stored as ::ffff:a.b.c.d
		}
		key.Addr = addr.As16()
		if err := m.Put(key, uint8(1)); err != nil {
			return fmt.Errorf("set address filter %s: %w", p, err)
		}
	}
	return nil
}

// fexitAllowed tells whether this kernel loads and attaches fexit programs
// (many do; some refuse them, e.g. with EPERM under a lockdown or a build
// without the trampolines): a one-instruction fexit on inet_csk_accept,
// loaded against kernelTypes (nil: the running kernel's) and attached for
// a moment.
func fexitAllowed(kernelTypes *btf.Spec) error {
	prog, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Name:         "probe_fexit",
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceFExit,
		AttachTo:     "inet_csk_accept",
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	}, ebpf.ProgramOptions{KernelTypes: kernelTypes})
	if err != nil {
		return err
	}
	defer prog.Close()
	// Some kernels load it but cannot attach it (no trampolines: arm64
	// before 6.0 and 6.1 as Debian builds it).
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	return l.Close()
}
