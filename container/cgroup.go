// SPDX-License-Identifier: Apache-2.0

package container

import (
	"bytes"
	"strings"
)

// This file reads a container id and a pod uid out of a cgroup path: the
// layouts kubelet (systemd and cgroupfs drivers), containerd, CRI-O,
// Docker, podman, nerdctl and systemd-nspawn make. It is pure string work,
// so that every layout is a unit test.

// Runtimes, as Identity.Runtime names them.
const (
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimeDocker     = "docker"
	RuntimePodman     = "podman"
	RuntimeNspawn     = "systemd-nspawn"
)

// Path is what a cgroup path tells: the container (ID, Runtime) and the
// pod (PodUID) it belongs to. Zero when it names neither.
type Path struct {
	ID      string
	Runtime string
	PodUID  string
}

// InContainer says whether the path named a container or a pod.
func (p Path) InContainer() bool { return p.ID != "" || p.PodUID != "" }

// ParsePath reads one cgroup path, as /proc/PID/cgroup gives it (absolute,
// or relative to the reader's cgroup namespace with leading "/.."). Each
// component is matched on its own, so a prefix (a nested kubelet in kind,
// a cgroup namespace) does not matter; a component that looks like an id
// counts only where its layout puts one, so an unrelated hex name (a
// sandbox's memory cgroup) is not taken for a container.
func ParsePath(path string) Path {
	var p Path
	parts := strings.Split(strings.Trim(path, "/"), "/")
	kube := false // below a kubepods cgroup
	for i, c := range parts {
		parent := ""
		if i > 0 {
			parent = parts[i-1]
		}
		switch {
		case c == "kubepods" || c == "kubepods.slice" || strings.HasSuffix(c, "-kubepods.slice"):
			// kubepods.slice, or kubelet-kubepods.slice of a nested kubelet
			kube = true
		case (kube || parent == ".." || parent == "besteffort" || parent == "burstable") &&
			strings.HasPrefix(c, "pod") && isPodUID(c[3:]):
			// cgroupfs driver: /kubepods/<qos>/pod<uid>; seen from
			// another pod's cgroup namespace, /../../<qos>/pod<uid>
			p.PodUID = c[3:]
		case (kube || strings.HasPrefix(c, "kubepods-") || strings.Contains(c, "-kubepods-")) &&
			strings.HasSuffix(c, ".slice") && strings.Contains(c, "-pod"):
			// systemd driver: kubepods-<qos>-pod<uid with _ for ->.slice
			// (the name says kubepods even where the path is relative)
			uid := strings.ReplaceAll(c[strings.LastIndex(c, "-pod")+4:len(c)-len(".slice")], "_", "-")
			if isPodUID(uid) {
				p.PodUID = uid
			}
		default:
			if id, rt := scopeID(c); id != "" {
				p.ID, p.Runtime = id, rt
				continue
			}
			if p.PodUID != "" && parent == "pod"+p.PodUID {
				// cgroupfs driver: the container directly below its pod,
				// named by its id (containerd, docker) or crio-<id>
				if isContainerID(c) {
					p.ID, p.Runtime = c, ""
				} else if id, ok := strings.CutPrefix(c, "crio-"); ok && isContainerID(id) {
					p.ID, p.Runtime = id, RuntimeCRIO
				}
				continue
			}
			switch parent {
			case "docker": // docker's cgroupfs driver: /docker/<id>
				if isContainerID(c) {
					p.ID, p.Runtime = c, RuntimeDocker
				}
			case "libpod_parent": // podman's cgroupfs manager
				if id, ok := strings.CutPrefix(c, "libpod-"); ok && isContainerID(id) {
					p.ID, p.Runtime = id, RuntimePodman
				}
			}
		}
	}
	return p
}

// scopePrefixes are the systemd units runtimes put a container in:
// <prefix><id>.scope.
var scopePrefixes = []struct{ prefix, runtime string }{
	{"cri-containerd-", RuntimeContainerd},
	{"crio-", RuntimeCRIO},
	{"docker-", RuntimeDocker},
	{"libpod-", RuntimePodman},
	{"nerdctl-", RuntimeContainerd},
}

// scopeID reads a systemd unit that holds a container: <runtime>-<id>.scope
// or systemd-nspawn@<name>.service. Conmon's scopes (crio-conmon-,
// libpod-conmon-) are the runtime's monitor, not the container.
func scopeID(c string) (id, runtime string) {
	if name, ok := strings.CutPrefix(c, "systemd-nspawn@"); ok {
		if name, ok = strings.CutSuffix(name, ".service"); ok && name != "" && !strings.ContainsAny(name, "@/") {
			return unescapeUnit(name), RuntimeNspawn
		}
		return "", ""
	}
	base, ok := strings.CutSuffix(c, ".scope")
	if !ok {
		return "", ""
	}
	for _, s := range scopePrefixes {
		if id, ok := strings.CutPrefix(base, s.prefix); ok && isContainerID(id) {
			return id, s.runtime
		}
	}
	return "", ""
}

// unescapeUnit undoes systemd's \xNN escapes in a unit name (a machine
// named my-box is systemd-nspawn@my\x2dbox.service).
func unescapeUnit(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' && isHex(s[i+2]) && isHex(s[i+3]) {
			b.WriteByte(unhex(s[i+2])<<4 | unhex(s[i+3]))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isContainerID accepts the ids runtimes make: 64 lower-case hex digits
// (Docker, containerd, CRI-O, podman).
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLowerHex(s[i]) {
			return false
		}
	}
	return true
}

// isPodUID accepts a pod's uid: a UUID (8-4-4-4-12 hex digits), or 32 hex
// digits (a static pod's uid is the hash of its manifest).
func isPodUID(s string) bool {
	switch len(s) {
	case 32:
		for i := 0; i < len(s); i++ {
			if !isLowerHex(s[i]) {
				return false
			}
		}
		return true
	case 36:
		for i := 0; i < len(s); i++ {
			switch i {
			case 8, 13, 18, 23:
				if s[i] != '-' {
					return false
				}
			default:
				if !isLowerHex(s[i]) {
					return false
				}
			}
		}
		return true
	}
	return false
}

func isLowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }
func isHex(c byte) bool      { return isLowerHex(c) || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// ParseProcCgroup reads /proc/PID/cgroup: one line per hierarchy,
// "ID:CONTROLLERS:PATH" (cgroup v1) or "0::PATH" (v2). Every line is
// parsed and the one telling the most wins (a container and its pod over
// a container alone over a pod alone): on a hybrid host the v2 line may be
// "/" while the v1 ones name the container, and systemd's own hierarchy may
// show a scope where the controllers show the kubelet's path.
func ParseProcCgroup(data []byte) Path {
	var best Path
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			continue
		}
		j := bytes.IndexByte(line[i+1:], ':')
		if j < 0 {
			continue
		}
		p := ParsePath(string(line[i+1+j+1:]))
		if score(p) > score(best) {
			best = p
		}
	}
	return best
}

func score(p Path) int {
	s := 0
	if p.ID != "" {
		s += 2
	}
	if p.PodUID != "" {
		s += 1
		if p.ID != "" {
			s += 2
		}
	}
	return s
}
