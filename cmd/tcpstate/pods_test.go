// SPDX-License-Identifier: Apache-2.0

package main

// Pod selection and labels on a host without pods.

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tcpstate/tcpstate/internal/testenv"
)

// noPodsHere skips the test where kubelet's logs name pods.
func noPodsHere(t *testing.T) {
	t.Helper()
	if podsKnown() {
		t.Skipf("%s names pods on this host", kubeletPods)
	}
}

// --pod or --namespace where no pod is known: said once, not a silent
// "total 0".
func TestPodFilterWithNoPodsSaysSo(t *testing.T) {
	testenv.RequireRoot(t)
	noPodsHere(t)
	ns := testenv.NewNetns(t)
	want := "tcpstate: no Kubernetes pods are known on this host (kubelet's /var/log/pods names none): --namespace and --pod match no socket\n"
	out, errOut, code := cli(t, "ls", "--pod", "web-0", "--netns", ns.Path, "-o", "json")
	if code != 0 || out != "" || errOut != want {
		t.Errorf("ls: exit %d, stdout %q, stderr %q; want 0, nothing, and %q", code, out, errOut, want)
	}
	out, errOut, code = cli(t, "stuck", "--namespace", "shop", "--netns", ns.Path, "-o", "json")
	if code != 0 || out != "" || errOut != want {
		t.Errorf("stuck: exit %d, stdout %q, stderr %q; want 0, nothing, and %q", code, out, errOut, want)
	}
	cmd := exec.Command(build(t), "trace", "--pod", "web-0", "--netns", ns.Path, "-d", "1s")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || strings.Count(stderr.String(), want) != 1 {
		t.Errorf("trace: %v, stderr %q; want %q once", err, stderr.String(), want)
	}
}

// An empty /var/log/pods (a node without pods, or a host that once had
// kubelet) does not turn pod labels on; the help says the default once.
func TestPodLabelsOnlyWithPods(t *testing.T) {
	testenv.RequireRoot(t)
	noPodsHere(t)
	if _, err := os.Lstat(kubeletPods); os.IsNotExist(err) {
		if err := os.Mkdir(kubeletPods, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(kubeletPods) })
	}
	bin, ns := build(t), testenv.NewNetns(t)
	startStuckHelper(t, ns.Name, "tcp4", 1, 0, 0, false)
	addr := freePort(t)
	startedWith(t, exec.Command(bin, "metrics", "--listen", addr, "--netns", ns.Path), "Serving Prometheus metrics on "+addr)
	waitHTTP(t, "http://"+addr+"/-/ready")
	body := scrapeBody(t, addr)
	if !strings.Contains(body, "\ntcpstate_sockets") {
		t.Fatalf("no tcpstate_sockets in the scrape:\n%s", body)
	}
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, "tcpstate_") && strings.Contains(line, `namespace=""`) {
			t.Errorf("pod labels with no pod on the host: %s", line)
		}
	}
	help, _, _ := cli(t, "metrics", "--help")
	if i := strings.Index(help, "--pod-labels"); i < 0 || strings.Contains(help[i:strings.IndexByte(help[i:], '\n')+i], "(default true)") ||
		!strings.Contains(help, "(default: on where kubelet's /var/log/pods names a pod;") {
		t.Errorf("help of --pod-labels: %q", help[i:strings.IndexByte(help[i:], '\n')+i])
	}
}
