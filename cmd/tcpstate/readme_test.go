// SPDX-License-Identifier: Apache-2.0

package main

import (
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tcpstate/tcpstate/internal/testenv"
)

// readmeLine returns the first line of README.md that starts with prefix.
func readmeLine(t *testing.T, prefix string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(readme)) {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(line)
		}
	}
	t.Fatalf("README.md has no line starting %q", prefix)
	return ""
}

// README's "who closes first" recipe, run as written on a connection
// closed by the client and one reset by it: every connection is counted
// under a name, none as "null".
func TestReadmeWhoClosesFirst(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("no jq")
	}
	recipe := readmeLine(t, "tcpstate life -o json -d 60s | jq")
	bin, ns := build(t), testenv.NewNetns(t)
	recipe = strings.Replace(recipe, "tcpstate life -o json -d 60s", bin+" life -o json -d 3s --netns "+ns.Path, 1)
	cmd := exec.Command("bash", "-o", "pipefail", "-c", recipe)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	startedWith(t, cmd, "Tracing TCP state transitions")
	for _, h := range []string{"connect", "reset"} {
		if out, err := testenv.Helper(ns.Name, h).CombinedOutput(); err != nil {
			t.Fatalf("helper %s: %v %s", h, err, out)
		}
	}
	out, _ := io.ReadAll(stdout)
	err = cmd.Wait()
	want := "1 local\n1 remote\n1 reset received\n1 reset sent\n"
	var got strings.Builder
	for line := range strings.Lines(string(out)) {
		got.WriteString(strings.Join(strings.Fields(line), " ") + "\n")
	}
	if err != nil || got.String() != want {
		t.Errorf("%s: %v, output %q; want %q", recipe, err, got.String(), want)
	}
}
