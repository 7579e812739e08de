// SPDX-License-Identifier: Apache-2.0

// Command probe runs inside the vmtest VMs (vmtest/vmtest.sh), before the
// integration tests. It loads every program of the committed BPF object on
// the running kernel, one at a time, and prints the verifier's or loader's
// error for any that fails; then it checks that tracer.New chose the tp_btf
// flavour there (it silently falls back to classic tracepoints otherwise,
// which the integration tests cannot tell apart). With -kernel-btf (the
// classic run, /sys/kernel/btf/vmlinux hidden) it loads the classic
// programs with that BTF and checks that tracer.New took the classic path
// and says that it does not follow TIME_WAIT. It names the hooks the
// tracer chose (tracer.Hooks), with TCPSTATE_TEST_HOOKS those asked for, as
// the tests get them. Exit status 1 means a program did not load, or the
// path or the hooks were not the ones expected.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/tcpstate/tcpstate/tracer"
)

func main() {
	obj := flag.String("obj", "tcpstate_bpfel.o", "the BPF object the tracer embeds")
	path := flag.String("path", "tp_btf", "the path the tracer must take: classic (with -kernel-btf), or tp_btf (any other label means tp_btf too)")
	kernelBTF := flag.String("kernel-btf", "", "BTF file for this kernel (classic path)")
	flag.Parse()
	spec, err := ebpf.LoadCollectionSpec(*obj)
	if err != nil {
		fmt.Printf("probe: read %s: %v\n", *obj, err)
		os.Exit(1)
	}
	ok := loadEach(spec, *kernelBTF)
	if *kernelBTF == "" {
		fexitAttach(spec)
	}
	if !checkFlavour(spec, *path, *kernelBTF) {
		ok = false
	}
	if !ok {
		os.Exit(1)
	}
}

// loadEach loads each program of the object (with the maps it uses) on its
// own, so one failure does not hide another. With a BTF file, only the
// classic tracepoint programs: the others need the kernel's own BTF.
func loadEach(spec *ebpf.CollectionSpec, kernelBTF string) bool {
	var opts ebpf.CollectionOptions
	if kernelBTF != "" {
		types, err := btf.LoadSpec(kernelBTF)
		if err != nil {
			fmt.Printf("probe: read %s: %v\n", kernelBTF, err)
			return false
		}
		opts.Programs.KernelTypes = types
	}
	names := make([]string, 0, len(spec.Programs))
	for name, ps := range spec.Programs {
		if kernelBTF == "" || ps.Type == ebpf.TracePoint {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	ok := true
	for _, name := range names {
		ps := spec.Programs[name]
		coll, err := ebpf.NewCollectionWithOptions(only(spec, name), opts)
		if err != nil {
			ok = false
			var ve *ebpf.VerifierError
			if errors.As(err, &ve) {
				fmt.Printf("probe: program %s (%s %s): FAILED, verifier: %-60v\n", name, ps.Type, ps.SectionName, ve)
			} else {
				fmt.Printf("probe: program %s (%s %s): FAILED: %v\n", name, ps.Type, ps.SectionName, err)
			}
			continue
		}
		coll.Close()
		fmt.Printf("probe: program %s (%s %s): loaded\n", name, ps.Type, ps.SectionName)
	}
	return ok
}

// only is spec with program name alone (and the maps it uses).
func only(spec *ebpf.CollectionSpec, name string) *ebpf.CollectionSpec {
	one := spec.Copy()
	for other := range one.Programs {
		if other != name {
			delete(one.Programs, other)
		}
	}
	return one
}

// fexitAttach tells whether this kernel attaches the object's fexit
// programs (accept_exit on inet_csk_accept, the tracer's fentry hooks):
// some load one they cannot attach (arm64 before ftrace direct calls).
func fexitAttach(spec *ebpf.CollectionSpec) {
	for name, ps := range spec.Programs {
		if ps.AttachType != ebpf.AttachTraceFExit {
			continue
		}
		coll, err := ebpf.NewCollection(only(spec, name))
		if err != nil {
			fmt.Printf("probe: fexit %s (%s): does not load: %v\n", name, ps.SectionName, err)
			continue
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[name]})
		if err != nil {
			fmt.Printf("probe: fexit %s (%s): loads, does not attach: %v\n", name, ps.SectionName, err)
		} else {
			l.Close()
			fmt.Printf("probe: fexit %s (%s): loads and attaches\n", name, ps.SectionName)
		}
		coll.Close()
	}
}

// checkFlavour starts a tracer and lists the programs of the object that
// are loaded while it runs, and its notices.
func checkFlavour(spec *ebpf.CollectionSpec, path, kernelBTF string) bool {
	// The hooks the tests are told to use (make vmtest runs each choice).
	hooks := tracer.Hooks(os.Getenv("TCPSTATE_TEST_HOOKS"))
	tr, err := tracer.New(tracer.Options{KernelBTF: kernelBTF, Hooks: hooks})
	if err != nil {
		fmt.Printf("probe: tracer.New: %v\n", err)
		return false
	}
	defer tr.Close()
	// The kernel keeps 15 bytes of a program's name.
	ours := map[string]string{}
	for name := range spec.Programs {
		ours[name[:min(len(name), 15)]] = name
	}
	var loaded []string
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			break
		}
		id = next
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		if info, err := prog.Info(); err == nil && ours[info.Name] != "" {
			loaded = append(loaded, ours[info.Name])
		}
		prog.Close()
	}
	slices.Sort(loaded)
	fmt.Printf("probe: tracer.New loaded %s\n", strings.Join(loaded, " "))
	notices := tr.Notices()
	for _, n := range notices {
		fmt.Printf("probe: tracer.New says: %s\n", n)
	}
	btfProgs := slices.Contains(loaded, "set_state_btf") && slices.Contains(loaded, "retransmit_btf")
	classic := slices.Contains(loaded, "set_state_tp") && slices.Contains(loaded, "retransmit_tp")
	ok := true
	if path == "classic" {
		if !classic {
			fmt.Println("probe: tracer.New did not take the classic-tracepoint path")
			return false
		}
		if !slices.ContainsFunc(notices, func(n string) bool { return strings.Contains(n, "TIME_WAIT is not followed") }) {
			fmt.Println("probe: tracer.New took the classic path without saying that TIME_WAIT is not followed")
			return false
		}
		fmt.Print("probe: tracer.New uses classic tracepoints, says TIME_WAIT is not followed")
	} else {
		if !btfProgs {
			fmt.Println("probe: tracer.New did not use tp_btf (fell back to classic tracepoints)")
			return false
		}
		fmt.Print("probe: tracer.New uses tp_btf")
	}
	got := tr.Hooks()
	fmt.Printf(", hooks %s", got)
	if hooks == tracer.HooksAuto {
		fmt.Print(" (chosen by the tracer)")
	} else if got != hooks {
		fmt.Printf(", not the %s asked for", hooks)
		ok = false
	}
	fmt.Println()
	return ok
}
