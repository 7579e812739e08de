// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/internal/testenv"
)

// lsCounts runs ls with -o json and returns count per state (and group).
func lsCounts(t *testing.T, key func(map[string]any) string, args ...string) map[string]int {
	t.Helper()
	out, errOut, code := cli(t, append([]string{"ls", "-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("ls %v: exit %d: %s", args, code, errOut)
	}
	counts := map[string]int{}
	for _, r := range jsonLines(t, out) {
		k := r["state"].(string)
		if key != nil {
			k += " " + key(r)
		}
		if _, dup := counts[k]; dup {
			t.Errorf("row %s twice", k)
		}
		counts[k] = num(r, "count")
	}
	return counts
}

func sameCounts(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: counts %v, want %v", what, got, want)
	}
}

// ls counts exactly the sockets the helpers made, per state, also the
// TIME_WAIT ones and those made before it ran.
func TestLsCounts(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t).Name
	path := "/run/netns/" + ns
	const n, unread, tw = 4, 100, 3
	h4 := startStuckHelper(t, ns, "tcp4", n, unread, tw, true)
	h6 := startStuckHelper(t, ns, "tcp6", n-1, unread, tw-1, false)
	p4, p6 := strconv.Itoa(h4.Port), strconv.Itoa(h6.Port)

	// The server side, by local port: the listener and CLOSE_WAIT.
	sameCounts(t, "--lport "+p4, lsCounts(t, nil, "--netns", path, "--lport", p4), map[string]int{"LISTEN": 1, "CLOSE_WAIT": n})
	// The client side, by remote port: FIN_WAIT2 (held) and TIME_WAIT.
	sameCounts(t, "--rport "+p6, lsCounts(t, nil, "--netns", path, "--rport", p6), map[string]int{"FIN_WAIT2": n - 1, "TIME_WAIT": tw - 1})
	sameCounts(t, "-4 --rport "+p6, lsCounts(t, nil, "--netns", path, "-4", "--rport", p6), map[string]int{})
	// The whole namespace.
	sameCounts(t, "all", lsCounts(t, nil, "--netns", path), map[string]int{
		"LISTEN": 2, "CLOSE_WAIT": 2*n - 1, "FIN_WAIT2": 2*n - 1, "TIME_WAIT": 2*tw - 1})
	sameCounts(t, "--state", lsCounts(t, nil, "--netns", path, "--state", "time-wait,close-wait"), map[string]int{
		"CLOSE_WAIT": 2*n - 1, "TIME_WAIT": 2*tw - 1})
	// By process: the helper's pid; the child sharing one socket counts
	// it too; TIME_WAIT belongs to no process.
	byPid := func(r map[string]any) string { return fmt.Sprintf("%v/%v", r["pid"], r["comm"]) }
	sameCounts(t, "--by process", lsCounts(t, byPid, "--netns", path, "--by", "process", "--lport", p4), map[string]int{
		fmt.Sprintf("LISTEN %d/%s", h4.Pid, testComm()):     1,
		fmt.Sprintf("CLOSE_WAIT %d/%s", h4.Pid, testComm()): n,
		fmt.Sprintf("CLOSE_WAIT %d/sleep", h4.Child):        1,
	})
	sameCounts(t, "--by process --pid", lsCounts(t, byPid, "--netns", path, "--by", "process", "--pid", strconv.Itoa(h4.Child)), map[string]int{
		fmt.Sprintf("CLOSE_WAIT %d/%s", h4.Pid, testComm()): 1,
		fmt.Sprintf("CLOSE_WAIT %d/sleep", h4.Child):        1,
	})
	sameCounts(t, "--by process --rport", lsCounts(t, byPid, "--netns", path, "--by", "process", "--rport", p4), map[string]int{
		fmt.Sprintf("FIN_WAIT2 %d/%s", h4.Pid, testComm()): n,
		"TIME_WAIT 0/": tw,
	})
	// By remote address and by local endpoint.
	byRemote := func(r map[string]any) string { return r["raddr"].(string) }
	sameCounts(t, "--by remote", lsCounts(t, byRemote, "--netns", path, "--by", "remote", "--state", "time-wait"), map[string]int{
		"TIME_WAIT 127.0.0.1": tw, "TIME_WAIT ::1": tw - 1})
	byLocal := func(r map[string]any) string { return fmt.Sprintf("%v:%v", r["laddr"], r["lport"]) }
	sameCounts(t, "--by local", lsCounts(t, byLocal, "--netns", path, "--by", "local", "--state", "close-wait,listen"), map[string]int{
		"LISTEN 127.0.0.1:" + p4: 1, "CLOSE_WAIT 127.0.0.1:" + p4: n, "LISTEN ::1:" + p6: 1, "CLOSE_WAIT ::1:" + p6: n - 1})

	// Oldest ages: lower bounds, made before ls ran.
	time.Sleep(time.Second)
	out, _, _ := cli(t, "ls", "--netns", path, "-o", "json")
	for _, r := range jsonLines(t, out) {
		age := time.Duration(num(r, "oldest_age_us")) * time.Microsecond
		_, known := r["oldest_age_us"]
		switch {
		case r["state"] == "LISTEN" && known:
			t.Errorf("LISTEN with an age: %v", r)
		case r["state"] != "LISTEN" && (age < time.Second-10*time.Millisecond || age > time.Since(h4.started)):
			t.Errorf("%v: oldest %s, want between 1s and %s", r["state"], age, time.Since(h4.started))
		}
	}
	// The table: one line per state and a total.
	out, _, _ = cli(t, "ls", "--netns", path)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	wantTotal := fmt.Sprintf("%d  in 1 network namespace", 2+2*(2*n-1)+2*tw-1)
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "STATE") || !strings.HasSuffix(lines[5], wantTotal) {
		t.Errorf("table:\n%s\nwant 4 states and a total ending %q", out, wantTotal)
	}
}

// Host-wide, the test namespace is among those read, and its sockets are
// counted.
func TestLsHostWide(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t).Name
	h := startStuckHelper(t, ns, "tcp4", 2, 1, 1, false)
	p := strconv.Itoa(h.Port)
	sameCounts(t, "host-wide --lport", lsCounts(t, nil, "--lport", p, "--state", "listen,close-wait"), map[string]int{"LISTEN": 1, "CLOSE_WAIT": 2})
	out, _, code := cli(t, "ls")
	if code != 0 || !strings.Contains(out, "network namespaces") {
		t.Errorf("ls: exit %d:\n%s", code, out)
	}
	// By inode, as trace accepts it.
	ino := strconv.Itoa(int(nsInode(t, ns)))
	sameCounts(t, "--netns INODE", lsCounts(t, nil, "--netns", ino, "--rport", p), map[string]int{"FIN_WAIT2": 2, "TIME_WAIT": 1})
}

func TestLsAndStuckBadFlags(t *testing.T) {
	cases := map[string][]string{
		"--by":              {"ls", "--by", "user"},
		"--output":          {"ls", "-o", "csv"},
		"--lport":           {"ls", "--lport", "0"},
		"--state":           {"stuck", "--state", "closewait"},
		"--for":             {"stuck", "--for", "-1s"},
		"for":               {"stuck", "--for", "soon"},
		"--netns":           {"stuck", "--netns", "/nonexistent"},
		"--duration":        {"stuck", "-d", "5s"},
		"--kernel-btf":      {"stuck", "--kernel-btf", "/x"},
		"-o":                {"stuck", "-o", "xml"},
		`for "tcpstate ls"`: {"ls", "extra"},
	}
	for want, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			stdout, stderr, code := cli(t, args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "tcpstate: ") || !strings.Contains(lines[0], want) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q: want status 2 and one line naming %s", code, stdout, stderr, want)
			}
		})
	}
}
