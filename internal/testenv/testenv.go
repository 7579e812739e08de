// SPDX-License-Identifier: Apache-2.0

// Package testenv is what the integration tests of every package share:
// the root check, fresh network namespaces, and helper processes (the test
// binary run again, inside a namespace, as a socket workload with a pid of
// its own).
package testenv

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireRoot skips a privileged test outside CI and fails it in CI,
// where it must run.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("privileged test: CI must run it as root")
	}
	t.Skip("privileged test: run as root (make test)")
}

// Netns is a fresh network namespace with only loopback up, deleted when
// the test ends.
type Netns struct {
	Name  string // as ip-netns names it
	Path  string // /run/netns/Name
	Inode uint32
}

// NewNetns makes a network namespace for t.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	RequireRoot(t)
	name := fmt.Sprintf("tcpstate-test-%d", rand.Uint32())
	for _, args := range [][]string{
		{"netns", "add", name},
		{"-n", name, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns := &Netns{Name: name, Path: "/run/netns/" + name}
	var st unix.Stat_t
	if err := unix.Stat(ns.Path, &st); err != nil {
		t.Fatal(err)
	}
	ns.Inode = uint32(st.Ino)
	return ns
}

// helperEnv carries a helper's name and arguments, separated by \x1f.
const helperEnv = "TCPSTATE_TEST_HELPER"

// Main is a test binary's TestMain: run as a helper (see Helper), it runs
// the named function of helpers and exits; otherwise it runs the tests.
func Main(m *testing.M, helpers map[string]func(args []string) error) {
	if v := os.Getenv(helperEnv); v != "" {
		args := strings.Split(v, "\x1f")
		run, ok := helpers[args[0]]
		if !ok {
			fmt.Fprintf(os.Stderr, "helper: unknown helper %q\n", args[0])
			os.Exit(2)
		}
		if err := run(args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Helper returns the command that runs this test binary as the helper
// name with args, inside the network namespace netns (as ip-netns names
// it; in this namespace when "").
func Helper(netns, name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if netns == "" {
		cmd = exec.Command(os.Args[0], "-test.run=^$")
	} else {
		cmd = exec.Command("ip", "netns", "exec", netns, os.Args[0], "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join(append([]string{name}, args...), "\x1f"))
	return cmd
}
