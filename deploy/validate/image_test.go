// SPDX-License-Identifier: Apache-2.0

//go:build imagetest

package validate

// The image test (make imagetest, as root; CI runs it): tcpstate's image
// under Docker with exactly the DaemonSet's capabilities, hostPID, mounts
// and read-only root, read from deploy/kubernetes/10-daemonset.yaml, looked
// at from outside. A workload container is placed in a cgroup of kubelet's
// layout (--cgroup-parent /kubepods/besteffort/pod<uid>) with kubelet's
// /var/log/pods and /var/log/containers entries for its names.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
)

// image is the image under test (make imagetest builds it).
func image() string {
	if s := os.Getenv("TCPSTATE_IMAGE"); s != "" {
		return s
	}
	return "tcpstate:latest"
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("privileged test: CI must run it as root")
	}
	t.Skip("privileged test: run as root (make imagetest)")
}

// docker runs a docker command and returns its standard output (that of
// the container, for docker run).
func docker(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("docker", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func newUID() string {
	h := randHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// runOptions are the docker run options that give the container what the
// DaemonSet gives it. Docker 20.10 does not know CAP_BPF and CAP_PERFMON:
// there CAP_SYS_ADMIN, which the DaemonSet also names, covers them.
func runOptions(t *testing.T, ds *appsv1.DaemonSet) []string {
	t.Helper()
	leaveNoKubeletDirs(t)
	spec := &ds.Spec.Template.Spec
	c := &spec.Containers[0]
	opts := []string{"--cap-drop", "ALL"}
	if spec.HostPID {
		opts = append(opts, "--pid", "host")
	}
	unknown := exec.Command("docker", "run", "--rm", "--cap-add", "BPF", "--entrypoint", "/tcpstate", image(), "--version").Run() != nil
	for _, cp := range Capabilities(ds) {
		if unknown && (cp == "BPF" || cp == "PERFMON") {
			t.Logf("docker does not know CAP_%s: left to CAP_SYS_ADMIN", cp)
			continue
		}
		opts = append(opts, "--cap-add", cp)
	}
	mounts, err := Mounts(ds)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		v := m.HostPath + ":" + m.MountPath
		if m.ReadOnly {
			v += ":ro"
		}
		if err := os.MkdirAll(m.HostPath, 0o755); err != nil { // DirectoryOrCreate
			t.Fatal(err)
		}
		opts = append(opts, "-v", v)
	}
	sc := c.SecurityContext
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		opts = append(opts, "--read-only")
	}
	if sc.RunAsUser != nil {
		opts = append(opts, "--user", strconv.FormatInt(*sc.RunAsUser, 10))
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Fatalf("seccomp profile %+v: the test runs Docker's default profile, the RuntimeDefault", sc.SeccompProfile)
	}
	return opts
}

// pod is a workload container in a kubelet-layout cgroup, with kubelet's
// log entries naming it.
type pod struct {
	ns, name, uid, container, id string
	timeWaitPort                 int
	closeWaitL, closeWaitR       int
}

func startPod(t *testing.T) *pod {
	t.Helper()
	leaveNoKubeletDirs(t)
	p := &pod{ns: "tcpstate-imagetest", name: "stuck-" + randHex(3), uid: newUID(), container: "server"}
	bin := filepath.Join(t.TempDir(), "workload")
	gotool := os.Getenv("GO") // make's, which finds go outside PATH too
	if gotool == "" {
		gotool = "go"
	}
	build := exec.Command(gotool, "build", "-o", bin, "./internal/workload")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the workload: %v\n%s", err, out)
	}
	parent := "/kubepods/besteffort/pod" + p.uid
	if docker(t, "info", "--format", "{{.CgroupDriver}}") == "systemd" {
		parent = "kubepods-besteffort-pod" + strings.ReplaceAll(p.uid, "-", "_") + ".slice"
	}
	// Created first, so that its names are there before it runs.
	p.id = docker(t, "create", "--cgroup-parent", parent, "--network", "none", "--cap-drop", "ALL",
		"-v", bin+":/workload:ro", "--entrypoint", "/workload", image())
	t.Cleanup(func() {
		exec.Command("docker", "rm", "-f", p.id).Run()
		// Docker leaves the parent cgroups: remove the pod's, and
		// kubepods/besteffort when nothing else is in them.
		for _, pat := range []string{"/sys/fs/cgroup/*/kubepods/besteffort/pod" + p.uid, "/sys/fs/cgroup/kubepods/besteffort/pod" + p.uid} {
			dirs, _ := filepath.Glob(pat)
			for _, d := range dirs {
				os.Remove(d)
				os.Remove(filepath.Dir(d))
				os.Remove(filepath.Dir(filepath.Dir(d)))
			}
		}
	})
	podDir := filepath.Join("/var/log/pods", p.ns+"_"+p.name+"_"+p.uid)
	link := filepath.Join("/var/log/containers", p.name+"_"+p.ns+"_"+p.container+"-"+p.id+".log")
	t.Cleanup(func() { os.RemoveAll(podDir); os.Remove(link) })
	if err := os.MkdirAll(filepath.Join(podDir, p.container), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/var/log/containers", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(podDir, p.container, "0.log"), link); err != nil {
		t.Fatal(err)
	}
	docker(t, "start", p.id)
	logs := waitLogs(t, p.id, "closewait ", false)
	for _, line := range strings.Split(logs, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "timewait":
			p.timeWaitPort, _ = strconv.Atoi(f[1])
		case len(f) == 3 && f[0] == "closewait":
			p.closeWaitL, _ = strconv.Atoi(f[1])
			p.closeWaitR, _ = strconv.Atoi(f[2])
		}
	}
	if p.timeWaitPort == 0 || p.closeWaitL == 0 {
		t.Fatalf("workload said %q", logs)
	}
	// The workload really is where kubelet would put a pod's container.
	pid := docker(t, "inspect", "-f", "{{.State.Pid}}", p.id)
	cg, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cg), "pod"+p.uid) || !strings.Contains(string(cg), p.id) {
		t.Fatalf("workload's cgroup is not kubelet's layout:\n%s", cg)
	}
	return p
}

// waitLogs waits for want in a container's output (stderr if errs).
func waitLogs(t *testing.T, id, want string, errs bool) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		cmd := exec.Command("docker", "logs", id)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		out := stdout.String()
		if errs {
			out = stderr.String()
		}
		if strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s never said %q; stdout:\n%s\nstderr:\n%s", id, want, stdout.String(), stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func loadDaemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	ds, err := DaemonSet(load(t))
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestImage: inside the container TIME_WAIT is followed and the owner's
// pod named in trace, stuck and ls, and --namespace, --pod select it.
func TestImage(t *testing.T) {
	requireRoot(t)
	ds := loadDaemonSet(t)
	opts := runOptions(t, ds)
	ns := "tcpstate-imagetest"

	// A tracer first, filtered to the pods of the test's namespace.
	trace := "tcpstate-imagetest-" + randHex(4)
	docker(t, append(append([]string{"run", "-d", "--name", trace}, opts...), image(), "trace", "-d", "60s", "-o", "json", "--namespace", ns)...)
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", trace).Run() })
	banner := waitLogs(t, trace, "Tracing TCP state transitions", true)
	// The notice a tracer gives when it cannot follow TIME_WAIT (not the
	// count of older sockets whose TIME_WAIT it cannot follow).
	if strings.Contains(banner, "TIME_WAIT is not followed") {
		t.Fatalf("inside the container TIME_WAIT is not followed:\n%s", banner)
	}
	// And life, likewise.
	life := "tcpstate-imagetest-life-" + randHex(4)
	docker(t, append(append([]string{"run", "-d", "--name", life}, opts...), image(), "life", "-d", "60s", "-o", "json", "--namespace", ns)...)
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", life).Run() })
	waitLogs(t, life, "Tracing TCP state transitions", true)

	p := startPod(t)
	want := map[string]any{"container_id": p.id, "pod_uid": p.uid, "namespace": p.ns, "pod": p.name, "container": p.container}
	checkPod := func(what string, rec map[string]any) {
		t.Helper()
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("%s: %s = %v, want %v\n%v", what, k, rec[k], v, rec)
			}
		}
	}

	// trace: the workload's connection enters TIME_WAIT (synthesized:
	// followed through tw_timer_handler), with its pod.
	out := waitLogs(t, trace, fmt.Sprintf(`"lport":%d,"raddr":"127.0.0.1","rport":%d,"oldstate":"FIN_WAIT2","newstate":"TIME_WAIT"`, p.timeWaitPort, p.closeWaitL), false)
	docker(t, "stop", trace)
	events := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("trace line %q: %v", line, err)
		}
		events++
		if ev["namespace"] != ns {
			t.Errorf("--namespace %s let through %v", ns, ev)
		}
		if ev["newstate"] == "TIME_WAIT" && ev["lport"] == float64(p.timeWaitPort) {
			if ev["synthesized"] != true || ev["comm"] != "workload" {
				t.Errorf("TIME_WAIT event %v: want synthesized, owned by workload", ev)
			}
			checkPod("trace TIME_WAIT event", ev)
		}
	}
	t.Logf("trace: %d events of namespace %s", events, ns)

	// life: the connection that ended in TIME_WAIT, with its pod.
	out = waitLogs(t, life, fmt.Sprintf(`"lport":%d,`, p.timeWaitPort), false)
	docker(t, "stop", life)
	found := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var c map[string]any
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("life line %q: %v", line, err)
		}
		if c["namespace"] != ns {
			t.Errorf("--namespace %s let through %v", ns, c)
		}
		if c["lport"] == float64(p.timeWaitPort) {
			found = true
			path, _ := c["path"].([]any)
			if len(path) == 0 || path[len(path)-1].(map[string]any)["state"] != "TIME_WAIT" || c["closed_by"] != "local" {
				t.Errorf("life record %v: want a path to TIME_WAIT, closed here", c)
			}
			checkPod("life record", c)
		}
	}
	if !found {
		t.Errorf("life printed no record of port %d:\n%s", p.timeWaitPort, out)
	}

	// stuck: the CLOSE_WAIT socket, its owner and its pod.
	time.Sleep(1500 * time.Millisecond)
	stuck := docker(t, append(append([]string{"run", "--rm"}, opts...), image(), "stuck", "--state", "close-wait", "--for", "1s", "-o", "json", "--pod", p.ns+"/"+p.name)...)
	lines := strings.Split(stuck, "\n")
	var row map[string]any
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &row) != nil {
		t.Fatalf("stuck --pod printed %q, want one row", stuck)
	}
	if row["lport"] != float64(p.closeWaitL) || row["rport"] != float64(p.closeWaitR) || row["state"] != "CLOSE_WAIT" {
		t.Errorf("stuck row %v: want CLOSE_WAIT %d <- %d", row, p.closeWaitL, p.closeWaitR)
	}
	if owners, _ := row["owners"].([]any); len(owners) != 1 || owners[0].(map[string]any)["comm"] != "workload" {
		t.Errorf("stuck row owners %v: want the workload", row["owners"])
	}
	checkPod("stuck row", row)

	// Another pod's name selects nothing.
	if other := docker(t, append(append([]string{"run", "--rm"}, opts...), image(), "stuck", "--state", "close-wait", "--for", "1s", "-o", "json", "--pod", "no-such-pod")...); other != "" {
		t.Errorf("stuck --pod no-such-pod printed %q", other)
	}

	// stuck --watch lists it at once, with its pod.
	watch := docker(t, append(append([]string{"run", "--rm"}, opts...), image(), "stuck", "--watch", "-d", "2s", "--state", "close-wait", "--for", "1s", "-o", "json", "--pod", p.name)...)
	lines = strings.Split(watch, "\n")
	row = nil
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &row) != nil || row["lport"] != float64(p.closeWaitL) {
		t.Fatalf("stuck --watch --pod printed %q, want its one row", watch)
	}
	checkPod("stuck --watch row", row)
	if other := docker(t, append(append([]string{"run", "--rm"}, opts...), image(), "stuck", "--watch", "-d", "2s", "--state", "close-wait", "--for", "1s", "-o", "json", "--pod", "no-such-pod")...); other != "" {
		t.Errorf("stuck --watch --pod no-such-pod printed %q", other)
	}

	// metrics, as the DaemonSet runs it (stuck after 1 s here), scraped by
	// a real Prometheus: the stuck CLOSE_WAIT socket under its pod's
	// labels, and the sockets of the pod.
	c := &ds.Spec.Template.Spec.Containers[0]
	metrics := "tcpstate-imagetest-metrics-" + randHex(4)
	docker(t, append(append(append([]string{"run", "-d", "--name", metrics}, opts...), image()), append(c.Args[:len(c.Args):len(c.Args)], "--stuck-for", "1s")...)...)
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", metrics).Run() })
	ip := docker(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", metrics)
	prom := startPrometheus(t, fmt.Sprintf("%s:%d", ip, c.Ports[0].ContainerPort))
	podLabels := fmt.Sprintf(`namespace=%q,pod=%q,container=%q`, p.ns, p.name, p.container)
	for query, want := range map[string]string{
		`tcpstate_stuck_sockets{state="CLOSE_WAIT",comm="workload",` + podLabels + `}`: "1",
		`tcpstate_sockets{state="CLOSE_WAIT",` + podLabels + `}`:                       "1",
	} {
		deadline := time.Now().Add(60 * time.Second)
		for got := promQuery(t, prom, query); got != want; got = promQuery(t, prom, query) {
			if time.Now().After(deadline) {
				out, _ := exec.Command("docker", "logs", metrics).CombinedOutput()
				t.Fatalf("Prometheus: %s = %q after 60 s, want %q; tcpstate:\n%s", query, got, want, out)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	// ls --by pod counts it under its pod.
	ls := docker(t, append(append([]string{"run", "--rm"}, opts...), image(), "ls", "--by", "pod", "--state", "close-wait", "--namespace", ns, "-o", "json")...)
	wantLs := fmt.Sprintf(`{"state":"CLOSE_WAIT","pod_uid":"%s","namespace":"%s","pod":"%s","count":1`, p.uid, p.ns, p.name)
	if !strings.HasPrefix(ls, wantLs) || strings.Count(ls, "\n") != 0 {
		t.Errorf("ls --by pod printed %q, want one row %s...", ls, wantLs)
	}
}

// startPrometheus runs Debian's Prometheus (make test installs it)
// scraping target every second until the test ends, and returns its URL.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tcpstate\n    static_configs:\n      - targets: [%q]\n", target)), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var log bytes.Buffer
	cmd := exec.Command("prometheus", "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("prometheus (make test installs it): %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30 s:\n%s", log.String())
		}
	}
}

// promQuery returns the value of the one series a PromQL query gives, ""
// when none.
func promQuery(t *testing.T, prom, query string) string {
	t.Helper()
	resp, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Data   struct{ Result []struct{ Value [2]any } }
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s", query, err, r.Status)
	}
	if len(r.Data.Result) != 1 {
		return fmt.Sprintf("%d series", len(r.Data.Result))
	}
	v, _ := r.Data.Result[0].Value[1].(string)
	return v
}

// TestImageResources runs tcpstate metrics as the DaemonSet does under
// loopback connection churn, checks its health and readiness endpoints,
// and measures its container's peak memory and CPU: the figures the
// DaemonSet's requests and limits come from (printed with -v).
func TestImageResources(t *testing.T) {
	requireRoot(t)
	ds := loadDaemonSet(t)
	opts := runOptions(t, ds)
	c := &ds.Spec.Template.Spec.Containers[0]
	name := "tcpstate-imagetest-metrics-" + randHex(4)
	docker(t, append(append(append([]string{"run", "-d", "--name", name}, opts...), image()), c.Args...)...)
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	ip := docker(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name)
	port := c.Ports[0].ContainerPort
	base := fmt.Sprintf("http://%s:%d", ip, port)
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, _ := get(c.ReadinessProbe.HTTPGet.Path)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			out, _ := exec.Command("docker", "logs", name).CombinedOutput()
			t.Fatalf("%s never ready:\n%s", c.ReadinessProbe.HTTPGet.Path, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, body := get(c.LivenessProbe.HTTPGet.Path); code != 200 {
		t.Errorf("%s: %d %s", c.LivenessProbe.HTTPGet.Path, code, body)
	}
	pid := docker(t, "inspect", "-f", "{{.State.Pid}}", name)
	cpu0 := cgroupCPU(t, pid)

	// Churn: 8 clients connect, send, close, for 10 s; a scrape a second.
	conns := churn(t, 10*time.Second, func() {
		if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "tcpstate_transitions_total") {
			t.Errorf("/metrics: %d", code)
		}
	})
	cpu := cgroupCPU(t, pid) - cpu0
	peak := cgroupPeakMemory(t, pid)
	limit := c.Resources.Limits.Memory().Value()
	t.Logf("tcpstate metrics under %d connections in 10 s (%.0f/s): %.2f s CPU (%.0f%% of a CPU), peak memory %.1f MiB (limit %d MiB)",
		conns, float64(conns)/10, cpu.Seconds(), 100*cpu.Seconds()/10, float64(peak)/(1<<20), limit>>20)
	if peak >= limit {
		t.Errorf("peak memory %d bytes reaches the DaemonSet's limit %d", peak, limit)
	}
}

// churn makes loopback connections from 8 goroutines for d, calling tick
// every second; it returns how many.
func churn(t *testing.T, d time.Duration, tick func()) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(c, bufio.NewReader(io.LimitReader(c, 16)))
				c.Close()
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	n := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 16)
			for ctx.Err() == nil {
				c, err := net.Dial("tcp4", ln.Addr().String())
				if err != nil {
					continue
				}
				c.Write(buf)
				io.ReadFull(c, buf)
				c.Close()
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
	}
	for tk := time.NewTicker(time.Second); ctx.Err() == nil; {
		select {
		case <-tk.C:
			tick()
		case <-ctx.Done():
		}
	}
	wg.Wait()
	return n
}

// cgroupFile finds a file of the container's cgroup: in the v1
// controller's hierarchy, or v2.
func cgroupFile(t *testing.T, pid, controller, v1, v2 string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == controller {
				return filepath.Join("/sys/fs/cgroup", controller, f[2], v1)
			}
		}
		if f[0] == "0" && f[1] == "" {
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
				return filepath.Join("/sys/fs/cgroup", f[2], v2)
			}
		}
	}
	t.Fatalf("no %s cgroup in\n%s", controller, b)
	return ""
}

func cgroupPeakMemory(t *testing.T, pid string) int64 {
	b, err := os.ReadFile(cgroupFile(t, pid, "memory", "memory.max_usage_in_bytes", "memory.peak"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func cgroupCPU(t *testing.T, pid string) time.Duration {
	path := cgroupFile(t, pid, "cpuacct", "cpuacct.usage", "cpu.stat")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(path, "cpu.stat") {
		for _, line := range strings.Split(string(b), "\n") {
			if us, ok := strings.CutPrefix(line, "usage_usec "); ok {
				n, _ := strconv.ParseInt(us, 10, 64)
				return time.Duration(n) * time.Microsecond
			}
		}
		t.Fatalf("no usage_usec in %s", path)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(n)
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
