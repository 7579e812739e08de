// SPDX-License-Identifier: Apache-2.0

package validate

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const manifests = "../kubernetes"

// wantCaps are the capabilities the DaemonSet adds, each explained in
// the README's Kubernetes section.
var wantCaps = []string{"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE", "SYS_NICE"}

func load(t *testing.T) []Object {
	t.Helper()
	objs, err := Load(manifests)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := load(t)
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.Kind)
	}
	slices.Sort(kinds)
	if want := []string{"DaemonSet", "Namespace", "Service", "ServiceMonitor"}; !slices.Equal(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
}

// A misspelled or unknown field, or a value of the wrong type, fails: the
// check is not one that passes anything.
func TestUnknownFieldsFail(t *testing.T) {
	b, err := os.ReadFile(manifests + "/10-daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	good := string(b)
	if _, err := Decode(b); err != nil {
		t.Fatalf("the DaemonSet itself: %v", err)
	}
	for name, c := range map[string]struct{ old, new, want string }{
		"misspelled":         {"hostPID: true", "hostPid: true", `unknown field "spec.template.spec.hostPid"`},
		"unknown, nested":    {"readOnlyRootFilesystem: true", "readOnlyRootFilesystem: true\n            readOnlyEverything: true", `unknown field "spec.template.spec.containers[0].securityContext.readOnlyEverything"`},
		"wrong type":         {"hostPID: true", "hostPID: yes-please", "hostPID"},
		"duplicate":          {"hostPID: true", "hostPID: true\n      hostPID: false", `already set`},
		"capability in list": {"drop: [\"ALL\"]", "drop: ALL", "drop"},
	} {
		t.Run(name, func(t *testing.T) {
			bad := strings.Replace(good, c.old, c.new, 1)
			if bad == good {
				t.Fatalf("%q not in the DaemonSet", c.old)
			}
			_, err := Decode([]byte(bad))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error with %q", err, c.want)
			}
		})
	}
	if _, err := Decode([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")); err == nil {
		t.Error("an unexpected kind was accepted")
	}
}

func TestDaemonSet(t *testing.T) {
	objs := load(t)
	ds, err := DaemonSet(objs)
	if err != nil {
		t.Fatal(err)
	}
	spec := &ds.Spec.Template.Spec
	c := &spec.Containers[0]
	if !spec.HostPID || spec.HostNetwork || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("hostPID %v, hostNetwork %v, service account token %v: want hostPID only, no token", spec.HostPID, spec.HostNetwork, spec.AutomountServiceAccountToken)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Privileged != nil && *sc.Privileged || sc.Capabilities == nil ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("securityContext %+v: want not privileged, drop ALL, read-only root", sc)
	}
	if got := Capabilities(ds); !slices.Equal(got, wantCaps) {
		t.Errorf("capabilities %v, want %v", got, wantCaps)
	}
	mounts, err := Mounts(ds)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, m := range mounts {
		if !m.ReadOnly || m.HostPath != m.MountPath {
			t.Errorf("mount %+v: want read-only, at the host's own path", m)
		}
		paths = append(paths, m.MountPath)
	}
	if want := []string{"/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/cgroup", "/var/log/pods", "/var/log/containers"}; !slices.Equal(paths, want) {
		t.Errorf("mounts %v, want %v", paths, want)
	}
	if len(c.Args) == 0 || c.Args[0] != "metrics" {
		t.Errorf("args %v: want tcpstate metrics", c.Args)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || c.Ports[0].ContainerPort != 9969 {
		t.Fatalf("ports %+v: want metrics on 9969", c.Ports)
	}
	if !slices.Contains(c.Args, ":9969") {
		t.Errorf("args %v do not listen on the container port", c.Args)
	}
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(int(c.Ports[0].ContainerPort)) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v", ann)
	}
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.LivenessProbe, "/-/healthy"}, {c.ReadinessProbe, "/-/ready"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe %+v: want GET %s on the metrics port", p.probe, p.path)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit", c.Resources)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations %+v: want every taint tolerated", spec.Tolerations)
	}
	sel, err := metav1LabelSelector(ds)
	if err != nil || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("the selector does not select the pods: %v", err)
	}
}

func metav1LabelSelector(ds *appsv1.DaemonSet) (labels.Selector, error) {
	return labels.ValidatedSelectorFromSet(ds.Spec.Selector.MatchLabels)
}

// The Service selects the DaemonSet's pods and the ServiceMonitor the
// Service, all in the Namespace made first.
func TestObjectsFitTogether(t *testing.T) {
	objs := load(t)
	ds, _ := DaemonSet(objs)
	var ns *corev1.Namespace
	var svc *corev1.Service
	var sm *monitoringv1.ServiceMonitor
	for _, o := range objs {
		switch x := o.Obj.(type) {
		case *corev1.Namespace:
			ns = x
			if !strings.HasSuffix(o.File, "00-namespace.yaml") {
				t.Errorf("the Namespace is in %s: kubectl apply -f applies files in name order, it must come first", o.File)
			}
		case *corev1.Service:
			svc = x
		case *monitoringv1.ServiceMonitor:
			sm = x
		}
	}
	if ns == nil || svc == nil || sm == nil || ds == nil {
		t.Fatal("missing objects")
	}
	for _, m := range []string{ds.Namespace, svc.Namespace, sm.Namespace} {
		if m != ns.Name {
			t.Errorf("namespace %q, want %q", m, ns.Name)
		}
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Error("the Service does not select the DaemonSet's pods")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
		t.Errorf("Service ports %+v", svc.Spec.Ports)
	}
	if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) ||
		len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name {
		t.Error("the ServiceMonitor does not scrape the Service's metrics port")
	}
}

// The README explains every capability the DaemonSet adds.
func TestREADMEExplainsCapabilities(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Kubernetes\n")
	if !ok {
		t.Fatal("README has no Kubernetes section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	for _, c := range wantCaps {
		if !strings.Contains(sec, "`CAP_"+c+"`") {
			t.Errorf("README's Kubernetes section does not explain `CAP_%s`", c)
		}
	}
	if !strings.Contains(sec, "kubectl apply -f deploy/kubernetes/") {
		t.Error("README's Kubernetes section lacks the one install command")
	}
}
