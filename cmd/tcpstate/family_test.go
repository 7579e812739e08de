// SPDX-License-Identifier: Apache-2.0

package main

// -4 and -6 with a dual-stack server: its IPv4 clients' sockets are IPv6
// sockets of IPv4-mapped addresses, shown and selected as IPv4.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/internal/testenv"
)

// dualStack listens on [::]:0 (dual-stack), connects to it at
// ::ffff:127.0.0.1 (an IPv4 client: an AF_INET socket; the server's is an
// AF_INET6 socket of mapped addresses), and closes, client first. With
// "hold" it prints "ready" and keeps the connection until stdin closes.
func dualStack(args []string) error {
	ln, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := net.Dial("tcp", fmt.Sprintf("[::ffff:127.0.0.1]:%d", ln.Addr().(*net.TCPAddr).Port))
	if err != nil {
		return err
	}
	s, err := ln.Accept()
	if err != nil {
		return err
	}
	if len(args) > 0 && args[0] == "hold" {
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
	}
	c.Close()
	io.ReadAll(s)
	time.Sleep(10 * time.Millisecond)
	return s.Close()
}

func TestFamilyOfMappedAddresses(t *testing.T) {
	testenv.RequireRoot(t)
	bin := build(t)

	t.Run("trace", func(t *testing.T) {
		ns := testenv.NewNetns(t).Name
		path := "/run/netns/" + ns
		type run struct {
			cmd *exec.Cmd
			out io.Reader
			err *bufio.Reader
		}
		runs := map[string]*run{}
		for _, fam := range []string{"-4", "-6"} {
			cmd := exec.Command(bin, "trace", fam, "-o", "json", "--netns", path)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			runs[fam] = &run{cmd: cmd, out: out, err: started(t, cmd)}
		}
		if out, err := testenv.Helper(ns, "dualstack").CombinedOutput(); err != nil {
			t.Fatalf("helper: %v %s", err, out)
		}
		time.Sleep(300 * time.Millisecond)
		got := map[string][]string{}
		for fam, r := range runs {
			r.cmd.Process.Signal(syscall.SIGINT)
			out, _ := io.ReadAll(r.out)
			rest, _ := io.ReadAll(r.err)
			if err := r.cmd.Wait(); err != nil {
				t.Fatalf("%s: %v (stderr %q)", fam, err, rest)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				var ev map[string]any
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("%s: line not JSON: %q", fam, line)
				}
				got[fam] = append(got[fam], fmt.Sprintf("%v %v %v->%v", ev["family"], ev["laddr"], ev["oldstate"], ev["newstate"]))
			}
		}
		// The listener on :: is IPv6; the client (AF_INET) and the server's
		// child (AF_INET6, ::ffff:127.0.0.1, printed 127.0.0.1) are IPv4.
		if want := "ipv6 :: CLOSE->LISTEN ipv6 :: LISTEN->CLOSE"; strings.Join(got["-6"], " ") != want {
			t.Errorf("-6: %q, want %q", got["-6"], want)
		}
		count := map[string]int{}
		for _, e := range got["-4"] {
			count[strings.Fields(e)[0]+" "+strings.Fields(e)[1]]++
		}
		if want := map[string]int{"ipv4 127.0.0.1": 5, "ipv6 127.0.0.1": 5}; fmt.Sprint(count) != fmt.Sprint(want) {
			t.Errorf("-4: %v (%q), want %v: client's 5 and the server child's 5", count, got["-4"], want)
		}
	})

	// Counted in the kernel: -4 counts the server child too.
	t.Run("metrics", func(t *testing.T) {
		ns := testenv.NewNetns(t)
		addr := freePort(t)
		startedWith(t, exec.Command(bin, "metrics", "-4", "--listen", addr, "--netns", ns.Path), "Serving Prometheus metrics on "+addr)
		waitHTTP(t, "http://"+addr+"/-/ready")
		if out, err := testenv.Helper(ns.Name, "dualstack").CombinedOutput(); err != nil {
			t.Fatalf("helper: %v %s", err, out)
		}
		time.Sleep(300 * time.Millisecond)
		body := scrapeBody(t, addr)
		for series, want := range map[string]string{
			`tcpstate_transitions_total{from="LISTEN",to="SYN_RECV"}`:      "1",
			`tcpstate_transitions_total{from="SYN_SENT",to="ESTABLISHED"}`: "1",
			`tcpstate_transitions_total{from="CLOSE",to="LISTEN"}`:         "",
		} {
			got := ""
			for line := range strings.Lines(body) {
				if v, ok := strings.CutPrefix(line, series+" "); ok {
					got = strings.TrimSpace(v)
				}
			}
			if got != want {
				t.Errorf("%s = %q, want %q", series, got, want)
			}
		}
	})

	t.Run("ls", func(t *testing.T) {
		ns := testenv.NewNetns(t).Name
		path := "/run/netns/" + ns
		h := testenv.Helper(ns, "dualstack", "hold")
		stdin, err := h.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := h.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Start(); err != nil {
			t.Fatal(err)
		}
		defer h.Wait()
		defer stdin.Close()
		if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
			t.Fatalf("helper: %q, %v", line, err)
		}
		sameCounts(t, "-4", lsCounts(t, nil, "--netns", path, "-4"), map[string]int{"ESTABLISHED": 2})
		sameCounts(t, "-6", lsCounts(t, nil, "--netns", path, "-6"), map[string]int{"LISTEN": 1})
	})
}
