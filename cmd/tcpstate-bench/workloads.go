// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The workloads a mode is measured under (loadConfig.Workload).
const (
	// workloadChurn: Go clients connect, echo 16 bytes and close first,
	// to a Go server (the default).
	workloadChurn = "churn"
	// workloadHTTP: Debian's nginx answers a small response to wrk, every
	// request a new connection (Connection: close) that nginx closes
	// first, so the TIME_WAITs are the server's. Both saturate the CPUs.
	workloadHTTP = "http"
	// workloadKeepalive: the same nginx and wrk on keep-alive
	// connections: no transitions once connected, but every request
	// re-arms the retransmit and delayed-ACK timers (timer_list) of its
	// sockets. What tracing costs a host busy with timers, not with
	// connections.
	workloadKeepalive = "http-keepalive"
	// workloadSyscalls: dd copies one byte at a time from /dev/zero to
	// /dev/null, no TCP at all: what tracing costs every other process.
	workloadSyscalls = "syscalls"
)

// unitOf names what a workload's rate counts.
func unitOf(workload string) string {
	switch workload {
	case workloadHTTP, workloadKeepalive:
		return "requests"
	case workloadSyscalls:
		return "syscalls"
	}
	return "connections"
}

// nginxConf serves "ok" on 127.0.0.1:8080, a worker per CPU, no logs;
// keep-alive for %[2]s seconds (0: each response closes its connection).
const nginxConf = `daemon off;
master_process on;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log stderr crit;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[1]s;
	proxy_temp_path %[1]s;
	fastcgi_temp_path %[1]s;
	uwsgi_temp_path %[1]s;
	scgi_temp_path %[1]s;
	keepalive_timeout %[2]s;
	keepalive_requests 1000000;
	server {
		listen 127.0.0.1:8080 backlog=4096;
		location / { return 200 "ok\n"; }
	}
}
`

var wrkRate = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+)(ms|s|m),`)

// generateHTTP runs nginx and wrk in the load child's namespace: wrk for
// the warm-up, then again for the measured window.
func generateHTTP(cfg loadConfig) (loadResult, error) {
	var res loadResult
	dir, err := os.MkdirTemp("", "tcpstate-bench-nginx-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	conf := filepath.Join(dir, "nginx.conf")
	keepalive, header := "0", []string{"-H", "Connection: close"}
	if cfg.Workload == workloadKeepalive {
		keepalive, header = "600", nil
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, keepalive)), 0o644); err != nil {
		return res, err
	}
	nginx := exec.Command("nginx", "-c", conf, "-p", dir)
	nginx.Stderr = os.Stderr
	if err := nginx.Start(); err != nil {
		return res, fmt.Errorf("start nginx (apt-get install nginx-light): %w", err)
	}
	defer func() {
		nginx.Process.Signal(os.Interrupt)
		nginx.Wait()
	}()
	wrk := func(d time.Duration) (int64, float64, error) {
		secs := max(1, int(d.Round(time.Second)/time.Second))
		args := append([]string{"-t", strconv.Itoa(max(1, cfg.Conns/16)), "-c", strconv.Itoa(cfg.Conns), "-d", strconv.Itoa(secs) + "s"}, header...)
		out, err := exec.Command("wrk", append(args, "http://127.0.0.1:8080/")...).CombinedOutput()
		if err != nil {
			return 0, 0, fmt.Errorf("wrk (apt-get install wrk): %w: %s", err, out)
		}
		m := wrkRate.FindSubmatch(out)
		if m == nil {
			return 0, 0, fmt.Errorf("wrk printed no request count: %s", out)
		}
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		t, _ := strconv.ParseFloat(string(m[2]), 64)
		switch string(m[3]) {
		case "ms":
			t /= 1000
		case "m":
			t *= 60
		}
		if e := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+)`).FindSubmatch(out); e != nil {
			res.FirstError = strings.TrimSpace(string(e[0]))
		}
		return n, t, nil
	}
	// nginx is up once it answers.
	for i := 0; ; i++ {
		if err := exec.Command("wrk", "-t1", "-c1", "-d1s", "http://127.0.0.1:8080/").Run(); err == nil {
			break
		} else if i == 50 {
			return res, fmt.Errorf("nginx does not answer: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	warm, _, err := wrk(cfg.Warmup)
	if err != nil {
		return res, err
	}
	n, secs, err := wrk(cfg.Duration)
	if err != nil {
		return res, err
	}
	res.Conns, res.Total, res.Seconds = n, n+warm, secs
	return res, nil
}

// generateSyscalls times dd copying bytes one at a time (a read and a
// write each): about cfg.Duration's worth untraced here.
func generateSyscalls(cfg loadConfig) (loadResult, error) {
	var res loadResult
	bytes := int(3_000_000 * cfg.Duration.Seconds()) // 3 M a second here
	start := time.Now()
	out, err := exec.Command("dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count="+strconv.Itoa(bytes)).CombinedOutput()
	if err != nil {
		return res, fmt.Errorf("dd: %w: %s", err, out)
	}
	res.Seconds = time.Since(start).Seconds()
	res.Conns, res.Total = 2*int64(bytes), 2*int64(bytes)
	return res, nil
}
