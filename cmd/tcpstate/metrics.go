// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/spf13/cobra"

	"github.com/tcpstate/tcpstate/container"
	"github.com/tcpstate/tcpstate/internal/connlimit"
	"github.com/tcpstate/tcpstate/metrics"
	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tracer"
)

// defaultListen is the address of tcpstate metrics.
const defaultListen = ":9969"

const metricsExamples = `  # Serve Prometheus metrics on :9969/metrics until Ctrl-C
  sudo tcpstate metrics

  # Only loopback, with TLS and basic auth (exporter-toolkit web config)
  sudo tcpstate metrics --listen 127.0.0.1:9969 --web.config.file /etc/tcpstate/web.yml

  # One container's network namespace; sockets stuck for over 5 minutes
  sudo tcpstate metrics --netns /run/netns/app --stuck-for 5m`

type metricsFlags struct {
	filterFlags
	listen    string
	webConfig string
	stuckFor  time.Duration
	kernelBTF string
	podLabels bool
	maxConns  int
	maxReqs   int
}

func newMetricsCmd(stdout, stderr io.Writer) *cobra.Command {
	var f metricsFlags
	cmd := &cobra.Command{
		Use:   "metrics",
		Short: "Serve Prometheus metrics of TCP state transitions, connections and stuck sockets",
		Long: `Serve Prometheus metrics on --listen (default ` + defaultListen + `) at /metrics, until
Ctrl-C or SIGTERM: transitions, time spent in each state, connection
lifetimes, resets and failed connects, counted in the kernel (no event is
copied to user space, so the cost stays low on busy hosts), and at each scrape the sockets that exist now per state and those stuck in a
closing or connecting state for over --stuck-for, per holding process name.
/-/healthy answers 200 while tcpstate runs, /-/ready once the tracer is
attached.

Exit status: 2 for a bad flag; 3 when the --netns namespace is gone (it
ended on its own: a supervisor restarts it as a failure); 1 for other
errors; 0 after Ctrl-C or SIGTERM.

At most --web.max-connections HTTP connections are kept: over it, the one
idle longest is closed, so clients holding connections cannot keep a
scrape out; --web.max-requests scrapes run at once. Idle keep-alive
connections are closed after 15s.

--web.config.file enables TLS and basic authentication, in the format of
the Prometheus exporter-toolkit (as node_exporter):
https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md

The filters are those of 'tcpstate trace' and also select the sockets the
gauges count. Labels are state names, roles, reasons and process names
only: no pid, address or port, so the number of series stays bounded.
Transitions the kernel did not let tcpstate see (a BPF program still busy
on the CPU) are counted in tcpstate_events_lost_total and said on stderr.`,
		Example:      metricsExamples,
		Args:         noArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMetrics(cmd.Context(), &f, stdout, stderr)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.listen, "listen", defaultListen, "address to serve /metrics on (host:port; :9969 is every address)")
	fs.StringVar(&f.webConfig, "web.config.file", "", "exporter-toolkit web configuration file for TLS and basic authentication")
	fs.IntVar(&f.maxConns, "web.max-connections", 64, "most HTTP connections kept open; over it, the one idle longest is closed")
	fs.IntVar(&f.maxReqs, "web.max-requests", 10, "most scrapes of /metrics served at once; more are answered 503")
	fs.DurationVar(&f.stuckFor, "stuck-for", 30*time.Second, "count sockets as stuck after this long in a closing or connecting state")
	fs.BoolVar(&f.podLabels, "pod-labels", false, "namespace, pod and container labels on the socket and stuck gauges and the duration histograms (default: on where kubelet's "+kubeletPods+" names a pod; where sockets' cgroups do not tell their pod, cgroup v1 and hybrid hosts, each scrape reads every socket's holders from /proc)")
	fs.StringVar(&f.kernelBTF, "kernel-btf", "", "BTF file for this kernel, when /sys/kernel/btf/vmlinux is missing")
	f.register(fs)
	fs.SortFlags = false
	return cmd
}

// What one HTTP connection may hold: a keep-alive connection idle for
// longer is closed (Prometheus opens another at its next scrape), and a
// request's headers are at most this size (a scrape's are under 1 KiB).
const (
	idleTimeout    = 15 * time.Second
	maxHeaderBytes = 16 << 10
)

// tallyOnly is the handler of a tracer in tally mode, which delivers no
// events.
type tallyOnly struct{}

func (tallyOnly) Event(*tracer.Event) error { return nil }
func (tallyOnly) Tick() error               { return nil }

func (f *metricsFlags) validate() (tracer.Options, snapshot.Options, error) {
	if _, port, err := net.SplitHostPort(f.listen); err != nil || port == "" {
		return tracer.Options{}, snapshot.Options{}, usagef("invalid --listen %q: want host:port, such as :9969 or 127.0.0.1:9969", f.listen)
	} else if _, err := net.LookupPort("tcp", port); err != nil {
		return tracer.Options{}, snapshot.Options{}, usagef("invalid --listen %q: port %q is not a port number (0 to 65535) or service name", f.listen, port)
	}
	if f.maxConns < 1 {
		return tracer.Options{}, snapshot.Options{}, usagef("invalid --web.max-connections %d: must be at least 1", f.maxConns)
	}
	if f.maxReqs < 1 {
		return tracer.Options{}, snapshot.Options{}, usagef("invalid --web.max-requests %d: must be at least 1", f.maxReqs)
	}
	if f.stuckFor < 0 {
		return tracer.Options{}, snapshot.Options{}, usagef("invalid --stuck-for %s: must not be negative", f.stuckFor)
	}
	if f.webConfig != "" {
		if err := web.Validate(f.webConfig); err != nil {
			return tracer.Options{}, snapshot.Options{}, usagef("invalid --web.config.file %q: %v", f.webConfig, err)
		}
	}
	topts, err := f.options()
	if err != nil {
		return topts, snapshot.Options{}, err
	}
	topts.Tally = true
	if f.kernelBTF != "" {
		if err := checkKernelBTF(f.kernelBTF); err != nil {
			return topts, snapshot.Options{}, err
		}
		topts.KernelBTF = f.kernelBTF
	}
	if !f.set.Changed("pod-labels") {
		f.podLabels = podsKnown()
	}
	sopts, err := snapshotOptions(&f.filterFlags)
	return topts, sopts, err
}

func runMetrics(ctx context.Context, f *metricsFlags, stdout, stderr io.Writer) error {
	topts, sopts, err := f.validate()
	if err != nil {
		return err
	}
	if err := checkSnapshotPrivileges("metrics"); err != nil {
		return err
	}
	// Listen before loading the tracer, so that a port in use is one
	// sentence and status 1 at once; then web.Serve (what
	// web.ListenAndServe runs after its own net.Listen) serves it with
	// the TLS and basic authentication of --web.config.file.
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("cannot listen on %s: the address is already in use (another tcpstate metrics?); choose another with --listen", f.listen)
		}
		return fmt.Errorf("cannot listen on %s: %v", f.listen, err)
	}
	defer ln.Close()

	cfg := metrics.Config{
		Version:  buildVersion(),
		StuckFor: f.stuckFor,
		Snapshot: func(visit func(*snapshot.Socket) error) error { return snapshot.Snapshot(sopts, visit) },
	}
	if !sopts.ReadsOwners() {
		cfg.Owners = snapshot.FillOwners
	}
	if f.podLabels {
		cfg.Identify = f.holderIdentity
		// Durations are kept in the kernel per socket cgroup, named at
		// each scrape.
		topts.TallyCgroups = true
		cfg.IdentifyCgroup = func(id uint64) *container.Identity { return f.resolver().Lookup(0, id, time.Now()) }
		cfg.LiveCgroups = snapshot.CgroupIDs
	}
	f.sayNoPods(stderr)
	if !f.pods.Empty() {
		fmt.Fprintln(stderr, "tcpstate: --namespace and --pod select the sockets of tcpstate_sockets and the stuck gauges; the counters and histograms, kept in the kernel, count every pod (--cgroup selects for them too)")
	}
	col := metrics.New(cfg)
	reg := prometheus.NewRegistry()
	reg.MustRegister(col, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: f.maxReqs}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Healthy") })
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "Not ready: the tracer is not attached yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Ready")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "tcpstate metrics: see /metrics")
	})
	srv := connlimit.New(f.maxConns).Serve(&http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// Accept errors (out of file descriptors: retried) and TLS
		// handshake failures.
		ErrorLog: log.New(stderr, "tcpstate: ", 0),
	})
	systemd := false
	flags := &web.FlagConfig{WebListenAddresses: &[]string{f.listen}, WebSystemdSocket: &systemd, WebConfigFile: &f.webConfig}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	serveErr := make(chan error, 1)
	go func() {
		err := web.Serve(ln, srv, flags, logger)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		serveErr <- err
		if err != nil {
			cancel()
		}
	}()

	err = runSession(ctx, stdout, stderr, sessionConfig{
		opts: topts, netnsPath: f.netnsPath,
		banner: fmt.Sprintf("Serving Prometheus metrics on %s/metrics. Ctrl-C to end.", ln.Addr()),
		out:    nopOutput{},
		handler: func(t *tracer.Tracer) (tracer.Handler, error) {
			col.Attach(t)
			ready.Store(true)
			return tallyOnly{}, nil
		},
		summary:    func(lost uint64) string { return fmt.Sprintf("%d transitions lost", lost) },
		goneStatus: exitNetnsGone,
	})
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	srv.Shutdown(shutdown)
	if serr := <-serveErr; serr != nil && err == nil {
		err = fmt.Errorf("serving metrics on %s: %w", ln.Addr(), serr)
	}
	return err
}

// nopOutput is the output of a command that writes nothing to stdout.
type nopOutput struct{}

func (nopOutput) Begin() error { return nil }
func (nopOutput) Flush() error { return nil }
