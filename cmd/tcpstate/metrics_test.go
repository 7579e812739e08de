// SPDX-License-Identifier: Apache-2.0

package main

// tcpstate metrics scraped by a real Prometheus, and its command line.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/internal/testenv"
	"github.com/tcpstate/tcpstate/snapshot"
)

// metricsScenarios runs, in the test's namespace, a refused connect, a
// connection reset by the client (SO_LINGER 0) and a half-closed one
// (the client shuts down its side, the server still sends, then closes).
func metricsScenarios([]string) error {
	// Refused: nothing listens on the port a closed listener had.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	closed := ln.Addr().String()
	ln.Close()
	if c, err := net.Dial("tcp4", closed); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		return fmt.Errorf("connect to a closed port: %v, want ECONNREFUSED", err)
	}

	ln, err = net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	pair := func() (*net.TCPConn, *net.TCPConn, error) {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return nil, nil, err
		}
		s, err := ln.Accept()
		if err != nil {
			return nil, nil, err
		}
		return c.(*net.TCPConn), s.(*net.TCPConn), nil
	}
	pause := func() { time.Sleep(50 * time.Millisecond) }

	// Reset.
	client, server, err := pair()
	if err != nil {
		return err
	}
	if err := testenv.Reset(client, server); err != nil {
		return err
	}
	pause()

	// Half-close.
	client, server, err = pair()
	if err != nil {
		return err
	}
	if err := testenv.HalfClose(client, server); err != nil {
		return err
	}
	pause()
	return nil
}

// freePort returns a loopback address with a port nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not ready after 30s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promQuery returns the value of the one series a PromQL query gives, ""
// when it gives none.
func promQuery(t *testing.T, prom, query string) string {
	t.Helper()
	resp, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("query %s: %v", query, err)
	}
	if r.Status != "success" {
		t.Fatalf("query %s: %s %s", query, r.Status, r.Error)
	}
	switch len(r.Data.Result) {
	case 0:
		return ""
	case 1:
		s, _ := r.Data.Result[0].Value[1].(string)
		return s
	}
	t.Fatalf("query %s: %d series, want one: %v", query, len(r.Data.Result), r.Data.Result)
	return ""
}

func TestMetricsScrapedByPrometheus(t *testing.T) {
	testenv.RequireRoot(t)
	for _, name := range []string{"prometheus", "promtool"} {
		if _, err := exec.LookPath(name); err != nil {
			t.Fatalf("%s not installed (make test installs it: .ci/deps)", name)
		}
	}
	bin, ns := build(t), testenv.NewNetns(t)

	addr := freePort(t)
	tool := exec.Command(bin, "metrics", "--listen", addr, "--netns", ns.Path, "--stuck-for", "1h")
	startedWith(t, tool, "Serving Prometheus metrics on "+addr)
	waitHTTP(t, "http://"+addr+"/-/ready")
	waitHTTP(t, "http://"+addr+"/-/healthy")

	// One Prometheus reads the classic histograms, the other the native
	// ones (a feature flag in Debian's 2.42).
	promURL, promLog := startPrometheus(t, addr)
	nativeURL, nativeLog := startPrometheus(t, addr, "--enable-feature=native-histograms")

	if out, err := testenv.Helper(ns.Name, "metrics-scenarios").CombinedOutput(); err != nil {
		t.Fatalf("scenarios: %v %s", err, out)
	}

	// Exact values: each scenario's transitions, once.
	want := map[string]string{
		`up{job="tcpstate"}`: "1",
		`tcpstate_connect_failures_total{reason="refused"}`:                            "1",
		`tcpstate_transitions_total{from="SYN_SENT",to="CLOSE"}`:                       "1",
		`tcpstate_transitions_total{from="SYN_SENT",to="ESTABLISHED"}`:                 "2",
		`tcpstate_transitions_total{from="CLOSE",to="SYN_SENT"}`:                       "3",
		`tcpstate_transitions_total{from="ESTABLISHED",to="CLOSE_WAIT"}`:               "1",
		`tcpstate_transitions_total{from="FIN_WAIT2",to="TIME_WAIT"}`:                  "1",
		`tcpstate_transitions_total{from="LISTEN",to="CLOSE"}`:                         "2",
		`tcpstate_resets_total{state="SYN_SENT",direction="received"}`:                 "1",
		`tcpstate_resets_total{state="ESTABLISHED",direction="sent"}`:                  "1",
		`tcpstate_resets_total{state="ESTABLISHED",direction="received"}`:              "1",
		`tcpstate_state_duration_seconds_count{state="CLOSE_WAIT"}`:                    "1",
		`tcpstate_state_duration_seconds_count{state="SYN_SENT"}`:                      "3",
		`tcpstate_connection_duration_seconds_count{role="client",closed_by="local"}`:  "1",
		`tcpstate_connection_duration_seconds_count{role="server",closed_by="remote"}`: "1",
		`tcpstate_connection_duration_seconds_count{role="client",closed_by="reset"}`:  "1",
		`tcpstate_connection_duration_seconds_count{role="server",closed_by="reset"}`:  "1",
		`sum(tcpstate_connection_duration_seconds_count)`:                              "4",
		`tcpstate_sockets{state="TIME_WAIT"}`:                                          "1",
		`count(tcpstate_sockets)`:                                                      "1",
		`tcpstate_events_lost_total`:                                                   "0",
		`count(tcpstate_stuck_sockets)`:                                                "",
		`tcpstate_build_info`:                                                          "1",
	}
	check := func() []string {
		var bad []string
		for q, v := range want {
			if got := promQuery(t, promURL, q); got != v {
				bad = append(bad, fmt.Sprintf("%s = %q, want %q", q, got, v))
			}
		}
		return bad
	}
	deadline := time.Now().Add(20 * time.Second)
	for bad := check(); len(bad) > 0; bad = check() {
		if time.Now().After(deadline) {
			t.Fatalf("after 20s:\n%s\nprometheus:\n%s", strings.Join(bad, "\n"), promLog.String())
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The native histograms say the same: counts and sums, and a single
	// observation's bucket (native key k holds (2^((k-1)/8), 2^(k/8)] s)
	// has the value as its upper bound or just below it.
	nativeCheck := func() []string {
		var bad []string
		for _, series := range []string{`tcpstate_state_duration_seconds{state="SYN_SENT"}`, `tcpstate_state_duration_seconds{state="CLOSE_WAIT"}`,
			`tcpstate_connection_duration_seconds{role="client",closed_by="reset"}`} {
			count, sum := promQuery(t, nativeURL, "histogram_count("+series+")"), promQuery(t, nativeURL, "histogram_sum("+series+")")
			wantCount, wantSum := promQuery(t, promURL, strings.Replace(series, "{", "_count{", 1)), promQuery(t, promURL, strings.Replace(series, "{", "_sum{", 1))
			if count != wantCount || sum != wantSum {
				bad = append(bad, fmt.Sprintf("native %s: count %q sum %q, classic %q %q", series, count, sum, wantCount, wantSum))
			}
		}
		series := `tcpstate_state_duration_seconds{state="CLOSE_WAIT"}`
		top, _ := strconv.ParseFloat(promQuery(t, nativeURL, "histogram_quantile(1, "+series+")"), 64)
		value, _ := strconv.ParseFloat(promQuery(t, promURL, strings.Replace(series, "{", "_sum{", 1)), 64)
		if !(value > 0 && value <= top && top <= value*math.Exp2(1.0/8)*(1+1e-9)) {
			bad = append(bad, fmt.Sprintf("native bucket of the CLOSE_WAIT of %vs: upper bound %v", value, top))
		}
		return bad
	}
	for bad := nativeCheck(); len(bad) > 0; bad = nativeCheck() {
		if time.Now().After(deadline) {
			t.Fatalf("after 20s:\n%s\nprometheus:\n%s", strings.Join(bad, "\n"), nativeLog.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	// And they stay so: nothing was counted twice.
	time.Sleep(2500 * time.Millisecond)
	if bad := check(); len(bad) > 0 {
		t.Fatalf("later:\n%s", strings.Join(bad, "\n"))
	}

	// The exposition passes promtool's checks.
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	lint := exec.Command("promtool", "check", "metrics")
	lint.Stdin = bytes.NewReader(scrape)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// startPrometheus runs a Prometheus server with args that scrapes target
// every second, until the test ends; it returns its URL and log.
func startPrometheus(t *testing.T, target string, args ...string) (string, *bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: tcpstate
    static_configs:
      - targets: [%q]
`, target)), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	var log bytes.Buffer
	prom := exec.Command("prometheus", append([]string{"--config.file=" + config, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr}, args...)...)
	prom.Stdout, prom.Stderr = &log, &log
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prom.Process.Kill(); prom.Wait() })
	url := "http://" + addr
	waitHTTP(t, url+"/-/ready")
	return url, &log
}

// The port already in use is one sentence and status 1, before the tracer
// is loaded.
func TestMetricsPortInUse(t *testing.T) {
	testenv.RequireRoot(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"metrics", "--listen", ln.Addr().String()}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, stderr.String())
	}
	want := "tcpstate: cannot listen on " + ln.Addr().String() + ": the address is already in use"
	if lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
		t.Errorf("stderr %q, want one line starting %q", stderr.String(), want)
	}
}

// Bad metrics flags fail with status 2 and a line naming the flag.
func TestMetricsBadFlags(t *testing.T) {
	badConfig := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(badConfig, []byte("tls_server_config:\n  cert_file: /nonexistent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for flag, args := range map[string][]string{
		"--listen":          {"--listen", "9969"},
		"invalid --listen":  {"--listen", ":99999"},
		"--pod-labels":      {"--pod-labels=maybe"},
		"--stuck-for":       {"--stuck-for", "-1s"},
		"stuck-for":         {"--stuck-for", "soon"},
		"--web.config.file": {"--web.config.file", badConfig},
		"--lport":           {"--lport", "0"},
	} {
		t.Run(flag, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"metrics"}, args...), &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			if first, _, _ := strings.Cut(stderr.String(), "\n"); !strings.Contains(first, flag) {
				t.Errorf("first line %q does not name %s", first, flag)
			}
		})
	}
}

// --web.config.file: basic authentication as the exporter-toolkit does it.
func TestMetricsBasicAuth(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t)
	config := filepath.Join(t.TempDir(), "web.yml")
	// bcrypt of "s3cret" (cost 4)
	if err := os.WriteFile(config, []byte("basic_auth_users:\n  prom: $2a$04$LLcLONKkDEDxx6V2udm0Se9a74fVSJ0wvMBghrLrdNGF3t6ecXj3y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	startedWith(t, exec.Command(bin, "metrics", "--listen", addr, "--netns", ns.Path, "--web.config.file", config),
		"Serving Prometheus metrics on "+addr)
	get := func(user, password string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("", ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: status %d, want 401", code)
	}
	if code, _ := get("prom", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: status %d, want 401", code)
	}
	if code, body := get("prom", "s3cret"); code != http.StatusOK || !strings.Contains(body, "tcpstate_build_info") {
		t.Errorf("good credentials: status %d, body without tcpstate_build_info", code)
	}
}

// The scrape-time gauges: sockets per state, and stuck sockets per state
// and holder's name, as tcpstate stuck counts them.
func TestMetricsStuckGauges(t *testing.T) {
	testenv.RequireRoot(t)
	bin, ns := build(t), testenv.NewNetns(t)
	// Two connections half-closed by the client: two CLOSE_WAIT server
	// sockets (the first one shared with a child "sleep") and two
	// FIN_WAIT2 client sockets, all held by the helper.
	h := startStuckHelper(t, ns.Name, "tcp4", 2, 10, 0, true)
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", h.Pid))
	if err != nil {
		t.Fatal(err)
	}
	helper := strings.TrimSpace(string(comm))
	addr := freePort(t)
	startedWith(t, exec.Command(bin, "metrics", "--listen", addr, "--netns", ns.Path, "--stuck-for", "1s", "--pod-labels"),
		"Serving Prometheus metrics on "+addr)
	// Not in a pod: the pod labels are empty.
	const noPod = `container="",namespace="",pod="",`
	want := []string{
		`tcpstate_sockets{` + noPod + `state="CLOSE_WAIT"} 2`,
		`tcpstate_sockets{` + noPod + `state="FIN_WAIT2"} 2`,
		`tcpstate_sockets{` + noPod + `state="LISTEN"} 1`,
		fmt.Sprintf(`tcpstate_stuck_sockets{comm=%q,`+noPod+`state="CLOSE_WAIT"} 2`, helper),
		`tcpstate_stuck_sockets{comm="sleep",` + noPod + `state="CLOSE_WAIT"} 1`,
		fmt.Sprintf(`tcpstate_stuck_sockets{comm=%q,`+noPod+`state="FIN_WAIT2"} 2`, helper),
	}
	var missing []string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		lines := map[string]bool{}
		var stuckSeries int
		for l := range strings.Lines(string(body)) {
			l = strings.TrimSuffix(l, "\n")
			lines[l] = true
			if strings.HasPrefix(l, "tcpstate_stuck_sockets{") {
				stuckSeries++
			}
		}
		missing = missing[:0]
		for _, w := range want {
			if !lines[w] {
				missing = append(missing, w)
			}
		}
		if stuckSeries != 3 {
			missing = append(missing, fmt.Sprintf("%d tcpstate_stuck_sockets series, want 3", stuckSeries))
		}
		if len(missing) == 0 {
			return
		}
	}
	t.Fatalf("after 15s, missing:\n%s", strings.Join(missing, "\n"))
}

// The duration histograms of a pod's sockets carry its labels: a workload
// in a cgroup v2 of kubelet's cgroupfs layout, with kubelet's
// /var/log/pods and /var/log/containers entries for its names.
func TestMetricsDurationsByPod(t *testing.T) {
	testenv.RequireRoot(t)
	leaveNoKubeletDirs(t)
	bin, ns := build(t), testenv.NewNetns(t)
	uid := fmt.Sprintf("%08x-1111-2222-3333-%012x", rand.Uint32(), rand.Uint64()&(1<<48-1))
	cid := fmt.Sprintf("%016x%016x%016x%016x", rand.Uint64(), rand.Uint64(), rand.Uint64(), rand.Uint64())
	pod, podNS, ctr := "web-"+uid[:5], "tcpstate-test", "app"
	// The cgroup: every level made here is removed at the end.
	qos := filepath.Join(snapshot.Cgroup2Root(), "kubepods", "besteffort")
	cg := filepath.Join(qos, "pod"+uid, cid)
	for _, dir := range []string{filepath.Dir(qos), qos, filepath.Dir(cg), cg} {
		if err := os.Mkdir(dir, 0o755); err == nil {
			t.Cleanup(func() { os.Remove(dir) })
		} else if !errors.Is(err, os.ErrExist) {
			t.Fatal(err)
		}
	}
	// kubelet's names: the pod's log directory, the container's log link.
	podDir := filepath.Join("/var/log/pods", podNS+"_"+pod+"_"+uid)
	link := filepath.Join("/var/log/containers", pod+"_"+podNS+"_"+ctr+"-"+cid+".log")
	if err := os.MkdirAll(filepath.Join(podDir, ctr), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(podDir) })
	if err := os.MkdirAll("/var/log/containers", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(podDir, ctr, "0.log"), link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(link) })

	addr := freePort(t)
	startedWith(t, exec.Command(bin, "metrics", "--listen", addr, "--netns", ns.Path, "--pod-labels"), "Serving Prometheus metrics on "+addr)
	// The scenarios (a refused connect, a reset, a half-close), run by a
	// process moved into the pod's cgroup before it makes any socket (ip
	// netns exec has a /sys of its own: moved from here).
	helper := testenv.Helper(ns.Name, "metrics-scenarios")
	work := exec.Command("ip", "netns", "exec", ns.Name, "sh", "-c", `read go && exec "$1" -test.run='^$'`, "sh", os.Args[0])
	work.Env = helper.Env
	var out bytes.Buffer
	work.Stdout, work.Stderr = &out, &out
	goLine, err := work.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := work.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(work.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(goLine, "go")
	goLine.Close()
	if err := work.Wait(); err != nil {
		t.Fatalf("scenarios: %v %s", err, out.String())
	}
	labels := fmt.Sprintf(`container=%q,namespace=%q,pod=%q`, ctr, podNS, pod)
	want := []string{
		`tcpstate_connection_duration_seconds_count{closed_by="local",` + labels + `,role="client"} 1`,
		`tcpstate_connection_duration_seconds_count{closed_by="reset",` + labels + `,role="client"} 1`,
		`tcpstate_connection_duration_seconds_count{closed_by="remote",` + labels + `,role="server"} 1`,
		`tcpstate_connection_duration_seconds_count{closed_by="reset",` + labels + `,role="server"} 1`,
		`tcpstate_state_duration_seconds_count{` + labels + `,state="SYN_SENT"} 3`,
		`tcpstate_state_duration_seconds_count{` + labels + `,state="CLOSE_WAIT"} 1`,
	}
	var missing []string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for _, w := range want {
			if !strings.Contains(string(body), "\n"+w+"\n") {
				missing = append(missing, w)
			}
		}
		// Every duration of the namespace is the pod's.
		if strings.Contains(string(body), `namespace="",pod=""`) && strings.Contains(string(body), "tcpstate_state_duration_seconds_count{container=\"\"") {
			missing = append(missing, "durations without the pod's labels")
		}
		if len(missing) == 0 {
			return
		}
	}
	t.Fatalf("after 15s, missing:\n%s", strings.Join(missing, "\n"))
}

// leaveNoKubeletDirs removes, when the test ends, those of kubelet's log
// directories that do not exist now. The test (or Docker, for a bind
// mount) makes them, and a host left with them looks like a kubelet node
// to tcpstate: pod labels on by default, and a /proc walk at each scrape.
func leaveNoKubeletDirs(t *testing.T) {
	for _, dir := range []string{"/var/log/pods", "/var/log/containers"} {
		if _, err := os.Lstat(dir); os.IsNotExist(err) {
			t.Cleanup(func() { os.RemoveAll(dir) })
		}
	}
}
