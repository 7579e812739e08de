// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"os"
	"testing"
)

// TestLookupSymbol: the kernel's answer is the address /proc/kallsyms
// gives.
func TestLookupSymbol(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	want, err := kallsym("tw_timer_handler")
	if err != nil {
		t.Skip(err)
	}
	got, err := lookupSymbol("tw_timer_handler")
	if err != nil {
		t.Skipf("no bpf_kallsyms_lookup_name here: %v", err)
	}
	if got != want {
		t.Errorf("lookupSymbol = %#x, /proc/kallsyms says %#x", got, want)
	}
	if _, err := lookupSymbol("no_such_symbol_tcpstate"); err == nil {
		t.Error("lookupSymbol found a symbol that does not exist")
	}
}
