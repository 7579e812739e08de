// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The alerting rules we ship are valid Prometheus rules, and the README
// shows exactly them.
func TestAlertingRules(t *testing.T) {
	const file = "../deploy/prometheus/tcpstate-alerts.yml"
	rules, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, metric := range []string{"tcpstate_stuck_sockets", "tcpstate_connect_failures_total", "tcpstate_sockets", "tcpstate_listen_drops_total"} {
		if !strings.Contains(string(rules), metric+"{") && !strings.Contains(string(rules), metric+"[") {
			t.Errorf("no rule uses %s", metric)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+string(rules)+"```") {
		t.Errorf("README does not show %s as it is", file)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool (Debian prometheus) is needed: make test installs it")
		}
		t.Skip("promtool not installed (make test installs it)")
	}
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "4 rules found") {
		t.Errorf("promtool: %s, want 4 rules", out)
	}
}
