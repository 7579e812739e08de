// SPDX-License-Identifier: Apache-2.0

// Package validate reads tcpstate's Kubernetes manifests (deploy/kubernetes)
// strictly into the Kubernetes API types: a misspelled or unknown field, or
// a value of the wrong type, is an error. It is a module of its own so that
// tcpstate itself does not depend on the Kubernetes modules. The tests
// check the manifests; the image test (make imagetest) reads the
// DaemonSet's capabilities, hostPID and mounts from here, so that what is
// tested under Docker is what is deployed.
package validate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Object is one manifest document, decoded into its API type.
type Object struct {
	File string
	Kind string
	Obj  any // *corev1.Namespace, *appsv1.DaemonSet, *corev1.Service, *monitoringv1.ServiceMonitor
}

// kinds are the API types the manifests may hold, by apiVersion and kind.
var kinds = map[string]func() any{
	"v1/Namespace":      func() any { return &corev1.Namespace{} },
	"v1/Service":        func() any { return &corev1.Service{} },
	"apps/v1/DaemonSet": func() any { return &appsv1.DaemonSet{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// Load reads every .yaml file below dir.
func Load(dir string) ([]Object, error) {
	var out []Object
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		objs, err := Decode(b)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for i := range objs {
			objs[i].File = path
		}
		out = append(out, objs...)
		return nil
	})
	return out, err
}

// Decode decodes the documents of one file strictly.
func Decode(b []byte) ([]Object, error) {
	var out []Object
	for _, doc := range docSep.Split(string(b), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("read apiVersion and kind: %w", err)
		}
		newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			return nil, fmt.Errorf("unexpected apiVersion %q kind %q", tm.APIVersion, tm.Kind)
		}
		obj := newObj()
		if err := unmarshalStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("%s: %w", tm.Kind, err)
		}
		out = append(out, Object{Kind: tm.Kind, Obj: obj})
	}
	return out, nil
}

// unmarshalStrict decodes as the API server's strict field validation
// does: field names case-sensitively (encoding/json would take hostPid for
// hostPID), no unknown or duplicate fields.
func unmarshalStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(j, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func stripComments(doc string) string {
	var b bytes.Buffer
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// DaemonSet returns the one DaemonSet among objs.
func DaemonSet(objs []Object) (*appsv1.DaemonSet, error) {
	var ds *appsv1.DaemonSet
	for _, o := range objs {
		if d, ok := o.Obj.(*appsv1.DaemonSet); ok {
			if ds != nil {
				return nil, fmt.Errorf("two DaemonSets")
			}
			ds = d
		}
	}
	if ds == nil {
		return nil, fmt.Errorf("no DaemonSet")
	}
	return ds, nil
}

// Mount is a host directory the DaemonSet mounts into its container.
type Mount struct {
	HostPath, MountPath string
	ReadOnly            bool
}

// Mounts returns the tcpstate container's hostPath mounts.
func Mounts(ds *appsv1.DaemonSet) ([]Mount, error) {
	spec := &ds.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		return nil, fmt.Errorf("want one container, have %d", len(spec.Containers))
	}
	host := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			return nil, fmt.Errorf("volume %s is not a hostPath", v.Name)
		}
		host[v.Name] = v.HostPath.Path
	}
	var out []Mount
	for _, m := range spec.Containers[0].VolumeMounts {
		p, ok := host[m.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %s: no such volume", m.Name)
		}
		out = append(out, Mount{HostPath: p, MountPath: m.MountPath, ReadOnly: m.ReadOnly})
	}
	return out, nil
}

// Capabilities returns the capabilities the container adds.
func Capabilities(ds *appsv1.DaemonSet) []string {
	sc := ds.Spec.Template.Spec.Containers[0].SecurityContext
	if sc == nil || sc.Capabilities == nil {
		return nil
	}
	var out []string
	for _, c := range sc.Capabilities.Add {
		out = append(out, string(c))
	}
	return out
}
