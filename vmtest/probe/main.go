// SPDX-License-Identifier: Apache-2.0

// Command probe runs inside the vmtest VMs (vmtest/vmtest.sh), before the
// integration tests. It loads every program of the committed BPF object on
// the running kernel, one at a time, and prints the verifier's or loader's
// error for any that fails; then it checks that tracer.New chose the tp_btf
// flavour there (it silently falls back to classic tracepoints otherwise,
// which the integration tests cannot tell apart). Exit status 1 means a
// program did not load or the fallback was taken.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/tcpstate/tcpstate/tracer"
)

func main() {
	obj := flag.String("obj", "tcpstate_bpfel.o", "the BPF object the tracer embeds")
	flag.Parse()
	spec, err := ebpf.LoadCollectionSpec(*obj)
	if err != nil {
		fmt.Printf("probe: read %s: %v\n", *obj, err)
		os.Exit(1)
	}
	ok := loadEach(spec)
	if !checkFlavour(spec) {
		ok = false
	}
	if !ok {
		os.Exit(1)
	}
}

// loadEach loads each program of the object (with the maps it uses) on its
// own, so one failure does not hide another.
func loadEach(spec *ebpf.CollectionSpec) bool {
	names := make([]string, 0, len(spec.Programs))
	for name := range spec.Programs {
		names = append(names, name)
	}
	slices.Sort(names)
	ok := true
	for _, name := range names {
		one := spec.Copy()
		for other := range one.Programs {
			if other != name {
				delete(one.Programs, other)
			}
		}
		ps := spec.Programs[name]
		coll, err := ebpf.NewCollection(one)
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

// checkFlavour starts a tracer and lists the programs of the object that
// are loaded while it runs.
func checkFlavour(spec *ebpf.CollectionSpec) bool {
	tr, err := tracer.New(tracer.Options{})
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
	if !slices.Contains(loaded, "set_state_btf") || !slices.Contains(loaded, "retransmit_btf") {
		fmt.Println("probe: tracer.New did not use tp_btf (fell back to classic tracepoints)")
		return false
	}
	fmt.Println("probe: tracer.New uses tp_btf")
	return true
}
