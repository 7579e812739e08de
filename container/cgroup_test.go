// SPDX-License-Identifier: Apache-2.0

package container

import (
	"strings"
	"testing"
)

const (
	cid  = "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b"
	cid2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cid3 = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	uid  = "8a2c1f9e-3b7d-4c6a-9e1f-2d3c4b5a6f70"
	uidU = "8a2c1f9e_3b7d_4c6a_9e1f_2d3c4b5a6f70" // as the systemd driver writes it
	suid = "6d8f1b2c3a4e5f60718293a4b5c6d7e8"     // a static pod's uid
)

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		want       Path
	}{
		// kubelet, systemd cgroup driver (cgroup v2, and v1 per controller)
		{"systemd containerd burstable", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Path{ID: cid, Runtime: RuntimeContainerd, PodUID: uid}},
		{"systemd containerd besteffort", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Path{ID: cid, Runtime: RuntimeContainerd, PodUID: uid}},
		{"systemd containerd guaranteed", "/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Path{ID: cid, Runtime: RuntimeContainerd, PodUID: uid}},
		{"systemd crio", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-" + cid + ".scope",
			Path{ID: cid, Runtime: RuntimeCRIO, PodUID: uid}},
		{"systemd crio crun container subgroup", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-" + cid + ".scope/container",
			Path{ID: cid, Runtime: RuntimeCRIO, PodUID: uid}},
		{"systemd crio conmon is not the container", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope",
			Path{PodUID: uid}},
		{"systemd cri-dockerd", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/docker-" + cid + ".scope",
			Path{ID: cid, Runtime: RuntimeDocker, PodUID: uid}},
		{"systemd static pod", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + suid + ".slice/cri-containerd-" + cid + ".scope",
			Path{ID: cid, Runtime: RuntimeContainerd, PodUID: suid}},
		{"systemd pod slice only", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice",
			Path{PodUID: uid}},
		{"cgroup namespace relative", "/../../kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Path{ID: cid, Runtime: RuntimeContainerd, PodUID: uid}},
		{"cgroup namespace relative, guaranteed", "/../../../kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Path{ID: cid, Runtime: RuntimeContainerd, PodUID: uid}},
		{"cgroup namespace relative cgroupfs", "/../../besteffort/pod" + uid + "/" + cid, Path{ID: cid, PodUID: uid}},
		{"cgroup namespace relative cgroupfs guaranteed", "/../../pod" + uid + "/" + cid, Path{ID: cid, PodUID: uid}},
		{"slice named pod outside kubepods", "/system.slice/foo-pod" + uidU + ".slice/x", Path{}},
		{"kind nested kubelet systemd", "/system.slice/docker-" + cid2 + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Path{ID: cid, Runtime: RuntimeContainerd, PodUID: uid}},
		// kubelet, cgroupfs driver
		{"cgroupfs besteffort", "/kubepods/besteffort/pod" + uid + "/" + cid, Path{ID: cid, PodUID: uid}},
		{"cgroupfs burstable", "/kubepods/burstable/pod" + uid + "/" + cid, Path{ID: cid, PodUID: uid}},
		{"cgroupfs guaranteed", "/kubepods/pod" + uid + "/" + cid, Path{ID: cid, PodUID: uid}},
		{"cgroupfs crio", "/kubepods/burstable/pod" + uid + "/crio-" + cid, Path{ID: cid, Runtime: RuntimeCRIO, PodUID: uid}},
		{"cgroupfs static pod", "/kubepods/burstable/pod" + suid + "/" + cid, Path{ID: cid, PodUID: suid}},
		{"cgroupfs pod only", "/kubepods/besteffort/pod" + uid, Path{PodUID: uid}},
		{"cgroupfs nested kubelet (kind)", "/docker/" + cid2 + "/kubelet/kubepods/besteffort/pod" + uid + "/" + cid, Path{ID: cid, PodUID: uid}},
		// plain containers
		{"docker cgroupfs", "/docker/" + cid, Path{ID: cid, Runtime: RuntimeDocker}},
		{"docker systemd", "/system.slice/docker-" + cid + ".scope", Path{ID: cid, Runtime: RuntimeDocker}},
		{"podman root systemd", "/machine.slice/libpod-" + cid + ".scope", Path{ID: cid, Runtime: RuntimePodman}},
		{"podman split container", "/machine.slice/libpod-" + cid + ".scope/container", Path{ID: cid, Runtime: RuntimePodman}},
		{"podman rootless", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + cid + ".scope", Path{ID: cid, Runtime: RuntimePodman}},
		{"podman conmon", "/machine.slice/libpod-conmon-" + cid + ".scope", Path{}},
		{"podman cgroupfs", "/libpod_parent/libpod-" + cid, Path{ID: cid, Runtime: RuntimePodman}},
		{"nerdctl", "/system.slice/nerdctl-" + cid + ".scope", Path{ID: cid, Runtime: RuntimeContainerd}},
		{"systemd-nspawn", "/machine.slice/systemd-nspawn@web.service/payload", Path{ID: "web", Runtime: RuntimeNspawn}},
		{"systemd-nspawn escaped", `/machine.slice/systemd-nspawn@my\x2dbox.service`, Path{ID: "my-box", Runtime: RuntimeNspawn}},
		// not containers
		{"root", "/", Path{}},
		{"empty", "", Path{}},
		{"systemd service", "/system.slice/nginx.service", Path{}},
		{"user session", "/user.slice/user-0.slice/session-3.scope", Path{}},
		{"sandbox hex cgroup", "/process_api/c73506aecf46b548dbb6901c7c9e0664", Path{}},
		{"64 hex under an unknown parent", "/mygroup/" + cid, Path{}},
		{"pod outside kubepods", "/pod" + uid + "/" + cid, Path{}},
		{"bad pod uid", "/kubepods/besteffort/podnot-a-uid/" + cid, Path{}},
		{"pod uid upper case", "/kubepods/besteffort/pod" + strings.ToUpper(uid) + "/" + cid, Path{}},
		{"short container id", "/docker/" + cid[:12], Path{}},
		{"container id not hex", "/docker/" + strings.Repeat("g", 64), Path{}},
		{"container id too long", "/docker/" + cid + "0", Path{}},
		{"scope without id", "/system.slice/docker-.scope", Path{}},
		{"scope bad id", "/system.slice/docker-" + cid[:63] + "x.scope", Path{}},
		{"slice with bad pod uid", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/cri-containerd-" + cid + ".scope",
			Path{ID: cid, Runtime: RuntimeContainerd}},
		{"container dir not below its pod", "/kubepods/besteffort/pod" + uid + "/x/" + cid, Path{PodUID: uid}},
		{"slashes and dots", "//..//./kubepods//", Path{}},
		{"nspawn without name", "/machine.slice/systemd-nspawn@.service", Path{}},
		{"binary garbage", "\x00\xff/docker/\n", Path{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParsePath(tc.path); got != tc.want {
				t.Errorf("ParsePath(%q)\n got %+v\nwant %+v", tc.path, got, tc.want)
			}
		})
	}
}

func TestParseProcCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       Path
	}{
		{"v2 systemd", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope\n",
			Path{ID: cid, Runtime: RuntimeContainerd, PodUID: uid}},
		{"hybrid cgroupfs kubelet (this host's kind)", "9:name=systemd:/system.slice/containerd.service\n8:pids:/kubepods/besteffort/pod" + uid + "/" + cid +
			"\n4:memory:/kubepods/besteffort/pod" + uid + "/" + cid + "\n1:cpu:/kubepods/besteffort/pod" + uid + "/" + cid + "\n0::/\n",
			Path{ID: cid, PodUID: uid}},
		{"v1 docker beside a systemd scope", "12:name=systemd:/system.slice/docker-" + cid + ".scope\n3:memory:/docker/" + cid + "\n",
			Path{ID: cid, Runtime: RuntimeDocker}},
		{"v1 pod-level line loses to the container's", "2:cpu:/kubepods/besteffort/pod" + uid + "\n1:memory:/kubepods/besteffort/pod" + uid + "/" + cid + "\n",
			Path{ID: cid, PodUID: uid}},
		{"no trailing newline", "0::/docker/" + cid, Path{ID: cid, Runtime: RuntimeDocker}},
		{"host process", "9:name=systemd:/\n4:memory:/process_api/c73506aecf46b548dbb6901c7c9e0664\n0::/\n", Path{}},
		{"garbage lines", "nonsense\n::\n:\n0:/docker/" + cid + "\n\n", Path{}},
		{"empty", "", Path{}},
		{"colon in the path", "0::/docker/" + cid + ":x\n", Path{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseProcCgroup([]byte(tc.data)); got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// FuzzParseProcCgroup: any input parses without a panic, and whatever it
// finds is well formed.
func FuzzParseProcCgroup(f *testing.F) {
	f.Add([]byte("0::/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope\n"))
	f.Add([]byte("4:memory:/kubepods/besteffort/pod" + uid + "/" + cid + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := ParseProcCgroup(data)
		if p.ID != "" && p.Runtime != RuntimeNspawn && !isContainerID(p.ID) {
			t.Fatalf("bad id %q", p.ID)
		}
		if p.PodUID != "" && !isPodUID(p.PodUID) {
			t.Fatalf("bad pod uid %q", p.PodUID)
		}
	})
}
