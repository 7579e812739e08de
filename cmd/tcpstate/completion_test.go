// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// tcpstate completion SHELL writes the shell's script; the flags that
// take one of a known set complete to it.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "# bash completion V2 for tcpstate", "zsh": "#compdef tcpstate",
		"fish": "# fish completion for tcpstate", "powershell": "# powershell completion for tcpstate",
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"completion", shell}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), want) {
			t.Errorf("completion %s: exit %d, stdout starts %.40q, stderr %q; want 0 and %q", shell, code, stdout.String(), stderr.String(), want)
		}
	}
	for args, want := range map[string]string{
		"trace --state CLOSE_WAIT,FIN_": "CLOSE_WAIT,ESTABLISHED CLOSE_WAIT,SYN_SENT CLOSE_WAIT,SYN_RECV CLOSE_WAIT,FIN_WAIT1 CLOSE_WAIT,FIN_WAIT2 CLOSE_WAIT,TIME_WAIT " +
			"CLOSE_WAIT,CLOSE CLOSE_WAIT,CLOSE_WAIT CLOSE_WAIT,LAST_ACK CLOSE_WAIT,LISTEN CLOSE_WAIT,CLOSING CLOSE_WAIT,NEW_SYN_RECV :6",
		"stuck --state ": "ESTABLISHED SYN_SENT SYN_RECV FIN_WAIT1 FIN_WAIT2 TIME_WAIT CLOSE CLOSE_WAIT LAST_ACK LISTEN CLOSING NEW_SYN_RECV :6",
		"-o ":            "table json :4",
		"life -o ":       "table json :4",
		"ladder -o ":     "text mermaid svg :4",
		"ls --by ":       "process remote local pod :4",
		"completion ":    "bash fish powershell zsh :4",
	} {
		var stdout, stderr bytes.Buffer
		argv := append([]string{"__completeNoDesc"}, strings.Split(args, " ")...)
		if code := run(context.Background(), argv, &stdout, &stderr); code != 0 {
			t.Errorf("%s: exit %d, stderr %q", args, code, stderr.String())
		}
		if got := strings.Join(strings.Fields(stdout.String()), " "); got != want {
			t.Errorf("completing %q: %q, want %q", args, got, want)
		}
	}
}

// A missing or unknown shell is a bad command line.
func TestCompletionBadShell(t *testing.T) {
	for args, want := range map[string]string{
		"completion":      "tcpstate: completion: name a shell: bash, zsh, fish or powershell",
		"completion tcsh": `tcpstate: completion: unknown shell "tcsh": want bash, zsh, fish or powershell`,
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), strings.Fields(args), &stdout, &stderr)
		if first, _, _ := strings.Cut(stderr.String(), "\n"); code != 2 || first != want || stdout.Len() != 0 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2 and %q", args, code, stdout.String(), stderr.String(), want)
		}
	}
}
