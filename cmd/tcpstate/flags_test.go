// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/tcp"
)

// Bad command lines fail with status 2 and one line naming the flag, before
// anything is loaded (so these run without root).
func TestBadFlagsExitTwo(t *testing.T) {
	cases := map[string][]string{
		"--lport":              {"--lport", "0"},
		"--rport":              {"--rport", "70000"},
		"lport":                {"trace", "--lport", "http"},
		"--pid":                {"--pid", "-3"},
		"pid":                  {"--pid", "1,x"},
		"--state":              {"--state", "CLOSE_WAIT,bogus"},
		"--laddr":              {"--laddr", "300.1.1.1"},
		"--raddr":              {"--raddr", "10.0.0.0/33"},
		"--output":             {"-o", "xml"},
		"--cgroup":             {"--cgroup", "/nonexistent/cgroup"},
		"--netns":              {"--netns", "/nonexistent/ns"},
		"--comm":               {"--comm", "a-name-of-16-chr"},
		"--duration":           {"-d", "-1s"},
		"--duration 0s":        {"-d", "0"},
		"duration 0s":          {"life", "-d", "0s"},
		"duration":             {"-d", "soon"},
		"--kernel-btf":         {"--kernel-btf", "/nonexistent/vmlinux"},
		"bogus":                {"--bogus"},
		"--namespace":          {"--namespace", "Shop"},
		"--pod":                {"--pod", "shop/cart/x"},
		"pod":                  {"ls", "--pod", "cart_1"},
		"namespace":            {"stuck", "--namespace", "-shop"},
		"--pod ":               {"life", "--pod", "shop/"},
		"--by":                 {"ls", "--by", "pods"},
		"argument":             {"extra"},
		`for "tcpstate trace"`: {"trace", "extra"},
	}
	for want, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "tcpstate: ") || !strings.Contains(lines[0], want) {
				t.Errorf("stderr %q: want one line naming %q", stderr.String(), want)
			}
			if strings.Contains(stderr.String(), "goroutine") || stdout.Len() != 0 {
				t.Errorf("unexpected output: stdout %q stderr %q", stdout.String(), stderr.String())
			}
		})
	}
}

func TestHelpTeaches(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"trace", "--help"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
		for _, want := range []string{"--state", "--lport", "jq", "CLOSE_WAIT", "-o, --output"} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("%v: help lacks %q", args, want)
			}
		}
	}
}

func TestFlagsToOptions(t *testing.T) {
	var own unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &own); err != nil {
		t.Fatal(err)
	}
	f := filterFlags{
		ipv6:   true,
		pids:   []string{"10", "20"},
		comms:  []string{"nginx"},
		lports: []string{"80", "443"},
		raddrs: []string{"10.0.0.0/8", "::ffff:192.0.2.0/120", "[2001:db8::1]"},
		states: []string{"close-wait", "TCP_FIN_WAIT2"},
		netns:  strconv.FormatUint(own.Ino, 10),
	}
	o, err := f.options()
	if err != nil {
		t.Fatal(err)
	}
	if !o.IPv6 || o.IPv4 || len(o.PIDs) != 2 || o.PIDs[1] != 20 || o.Comms[0] != "nginx" ||
		len(o.LPorts) != 2 || o.LPorts[1] != 443 || o.NetNS != uint32(own.Ino) {
		t.Errorf("options %+v", o)
	}
	wantR := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::1/128")}
	if len(o.RAddrs) != len(wantR) {
		t.Fatalf("raddrs %v, want %v", o.RAddrs, wantR)
	}
	for i := range wantR {
		if o.RAddrs[i] != wantR[i] {
			t.Errorf("raddr %d: %s, want %s", i, o.RAddrs[i], wantR[i])
		}
	}
	if len(o.States) != 2 || o.States[0] != tcp.CloseWait || o.States[1] != tcp.FinWait2 {
		t.Errorf("states %v", o.States)
	}
}

// --kernel-btf is read whole into memory: a device or a huge file is
// refused before that, as a usage error naming the flag.
func TestKernelBTFMustBeASmallRegularFile(t *testing.T) {
	huge := filepath.Join(t.TempDir(), "huge.btf")
	if err := os.WriteFile(huge, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, maxKernelBTF+1); err != nil { // sparse
		t.Fatal(err)
	}
	for _, path := range []string{"/dev/zero", huge, t.TempDir()} {
		t.Run(path, func(t *testing.T) {
			// validate() only: before the check, the tracer would read
			// /dev/zero until the OOM killer came.
			tf := traceFlags{output: "table", kernelBTF: path}
			_, _, err := tf.validate()
			sf := stuckFlags{output: "table", watch: true, kernelBTF: path}
			_, serr := sf.validate()
			for _, err := range []error{err, serr} {
				var ue usageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--kernel-btf") {
					t.Errorf("validate: %v; want a usage error naming --kernel-btf", err)
				}
			}
		})
	}
	// A directory fails cheaply either way: through run, exit status 2.
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--kernel-btf", t.TempDir()}, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "not a regular file") {
		t.Errorf("exit %d, stderr %q; want 2 and 'not a regular file'", code, stderr.String())
	}
	// A file that is not BTF (junk, or empty) is bad input too, exit 2
	// and one line, for every command that takes the flag.
	junk := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(junk, []byte("not BTF at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--kernel-btf", junk}, {"life", "--kernel-btf", empty}, {"metrics", "--kernel-btf", junk}, {"stuck", "--watch", "--kernel-btf", junk}} {
		var stdout, stderr bytes.Buffer
		want := "tcpstate: invalid --kernel-btf \"" + args[len(args)-1] + "\": not a BTF file"
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 || !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line %q", args, code, stderr.String(), want)
		}
	}
	// The kernel's own BTF passes (whether it fits this kernel is for the
	// loader to say).
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
		tf := traceFlags{output: "table", kernelBTF: "/sys/kernel/btf/vmlinux"}
		if _, _, err := tf.validate(); err != nil {
			t.Errorf("/sys/kernel/btf/vmlinux: %v", err)
		}
	}
}

// --netns takes a network namespace file, or the inode of a namespace in
// use, resolved to a file to enter it by; anything else is a usage error
// for every command (trace and life used to trace nothing, ls and stuck
// to fail with status 1).
func TestNetnsMustBeANetworkNamespace(t *testing.T) {
	bad := map[string]string{
		"12345":             "no network namespace with this inode",
		"0":                 "no network namespace with this inode",
		"/proc/self/status": "not a network namespace file",
		"/proc/self/ns/mnt": "a mount namespace, not a network namespace",
		"/dev/null":         "not a network namespace file",
		"/nonexistent/ns":   "no such file",
	}
	for _, cmd := range [][]string{{"trace", "-d", "1s"}, {"life", "-d", "1s"}, {"ls"}, {"stuck"}} {
		for arg, want := range bad {
			args := append(slices.Clone(cmd), "--netns", arg)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				code := run(context.Background(), args, &stdout, &stderr)
				lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
				if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "tcpstate: invalid --netns") ||
					!strings.Contains(lines[0], want) || stdout.Len() != 0 {
					t.Errorf("exit %d, stdout %q, stderr %q; want 2 and one line naming --netns saying %q", code, stdout.String(), stderr.String(), want)
				}
			})
		}
	}

	// Good values: the path as given; an inode, resolved to a file of
	// that namespace.
	var own unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &own); err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{"/proc/self/ns/net", strconv.FormatUint(own.Ino, 10)} {
		f := filterFlags{netns: arg}
		o, err := f.options()
		if err != nil {
			t.Fatalf("--netns %s: %v", arg, err)
		}
		var st unix.Stat_t
		if err := unix.Stat(f.netnsPath, &st); err != nil || o.NetNS != uint32(own.Ino) || st.Ino != own.Ino {
			t.Errorf("--netns %s: inode %d, path %q (%v); want %d and a file of it", arg, o.NetNS, f.netnsPath, err, own.Ino)
		}
		if arg[0] == '/' && f.netnsPath != arg {
			t.Errorf("--netns %s: path %q, want it as given", arg, f.netnsPath)
		}
	}
}

// A filter flag given an empty value is a usage error naming it, as
// "--lport 80,,443" is: it used to mean no filter at all.
func TestEmptyFilterValueIsAnError(t *testing.T) {
	flags := []string{"pid", "comm", "lport", "rport", "laddr", "raddr", "state", "cgroup", "netns", "namespace", "pod"}
	for _, cmd := range [][]string{{"-d", "1s"}, {"trace", "-d", "1s"}, {"life", "-d", "1s"}, {"ls"}, {"stuck"}} {
		for _, name := range flags {
			for _, args := range [][]string{
				append(slices.Clone(cmd), "--"+name, ""),
				append(slices.Clone(cmd), "--"+name+"="),
			} {
				t.Run(strings.Join(args, " "), func(t *testing.T) {
					var stdout, stderr bytes.Buffer
					code := run(context.Background(), args, &stdout, &stderr)
					lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
					if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "tcpstate: invalid --"+name+":") || stdout.Len() != 0 {
						t.Errorf("exit %d, stdout %q, stderr %q; want 2 and one line naming --%s", code, stdout.String(), stderr.String(), name)
					}
				})
			}
		}
	}
}

// Addresses that cannot be matched as given are refused with a sentence:
// an IPv4-mapped prefix shorter than /96 (::ffff:0.0.0.0/10 used to
// become 0.0.0.0/0) and a zoned address (which matched nothing).
func TestAddressFilterRefusesWhatCannotMatch(t *testing.T) {
	bad := map[string]string{
		"::ffff:0.0.0.0/10": "/96 or longer",
		"::ffff:10.0.0.0/8": "/96 or longer",
		"fe80::1%eth0":      "zone",
		"[fe80::1%eth0]":    "zone",
		"fe80::1%eth0/64":   "zone",
	}
	for _, flag := range []string{"laddr", "raddr"} {
		for arg, want := range bad {
			for _, cmd := range []string{"ls", "trace"} {
				args := []string{cmd, "--" + flag, arg}
				if cmd == "trace" {
					args = append(args, "-d", "1s")
				}
				t.Run(strings.Join(args, " "), func(t *testing.T) {
					var stdout, stderr bytes.Buffer
					code := run(context.Background(), args, &stdout, &stderr)
					lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
					if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "tcpstate: invalid --"+flag) || !strings.Contains(lines[0], want) {
						t.Errorf("exit %d, stderr %q; want 2 and one line naming --%s saying %q", code, stderr.String(), flag, want)
					}
				})
			}
		}
	}
	// -4 or -6 with no prefix of that family would match nothing.
	for _, args := range [][]string{{"ls", "-4", "--laddr", "fd00::/64"}, {"trace", "-6", "--raddr", "10.0.0.0/8", "-d", "1s"}} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		if first, _, _ := strings.Cut(stderr.String(), "\n"); code != 2 || !strings.HasPrefix(first, "tcpstate: invalid --"+args[2][2:]+" with "+args[1]+": none of its prefixes is IPv") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a line naming %s and %s", args, code, stderr.String(), args[2], args[1])
		}
	}
	// Mapped prefixes of /96 and longer still mean the IPv4 ones.
	f := filterFlags{laddrs: []string{"::ffff:0.0.0.0/96", "::ffff:10.1.2.3"}}
	o, err := f.options()
	if err != nil || len(o.LAddrs) != 2 || o.LAddrs[0] != netip.MustParsePrefix("0.0.0.0/0") || o.LAddrs[1] != netip.MustParsePrefix("10.1.2.3/32") {
		t.Errorf("laddrs %v, %v; want 0.0.0.0/0 and 10.1.2.3/32", o.LAddrs, err)
	}
}

// --version prints the version baked in at build time.
func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got, want := stdout.String(), "tcpstate "+buildVersion()+"\n"; got != want || buildVersion() == "" {
		t.Errorf("--version printed %q, want %q", got, want)
	}
}
