// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/tcpstate/tcpstate/internal/testenv"
)

// Sockets whose age nothing bounds (a listener) are not listed, and
// stuck says so rather than nothing.
func TestStuckSaysWhatItCannotAge(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t).Name
	startStuckHelper(t, ns, "tcp4", 1, 0, 0, false)
	out, errOut, code := cli(t, "stuck", "--state", "listen", "--for", "0s", "--netns", "/run/netns/"+ns, "-o", "json")
	want := "tcpstate: 1 socket (LISTEN) not listed, age unknown: the kernel keeps no trace of when a socket entered this state; " +
		"'tcpstate stuck --watch' times those that enter it from then on\n"
	if code != 0 || out != "" || errOut != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0, nothing, and %q", code, out, errOut, want)
	}
}

// stuck --watch ends with a summary, as trace and life do.
func TestStuckWatchSummary(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t)
	cmd := exec.Command(bin, "stuck", "--watch", "-d", "1s", "--netns", ns.Path, "-o", "json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if err != nil || len(out) != 0 || len(lines) != 2 || lines[1] != "0 stuck, 0 left, 0 events lost" {
		t.Errorf("%v, stdout %q, stderr %q; want the banner and '0 stuck, 0 left, 0 events lost'", err, out, stderr.String())
	}
}
