// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/tcpstate/tcpstate/internal/testenv"
)

// A listener is stuck only while its accept queue is full: one that
// keeps up is not listed, and nothing is said of its age.
func TestStuckListenerNotFull(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t).Name
	startStuckHelper(t, ns, "tcp4", 1, 0, 0, false)
	out, errOut, code := cli(t, "stuck", "--state", "listen", "--for", "0s", "--netns", "/run/netns/"+ns, "-o", "json")
	if code != 0 || out != "" || errOut != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and nothing", code, out, errOut)
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
