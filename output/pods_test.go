// SPDX-License-Identifier: Apache-2.0

package output

import (
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate/container"
)

// testPods names the containers of the test records' owners, as a
// container.Resolver would: a full pod, a pod kubelet's logs do not name,
// a plain Docker container, hostile names; every other pid is on the
// host (no keys at all).
type testPods map[uint32]*container.Identity

const (
	testCID = "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b"
	testUID = "8a2c1f9e-3b7d-4c6a-9e1f-2d3c4b5a6f70"
)

var shopPod = &container.Identity{ContainerID: testCID, Runtime: container.RuntimeContainerd, PodUID: testUID,
	Namespace: "shop", Pod: "cart-7d9f8b6c5-x2x4z", Container: "app"}

var pods = testPods{
	1234:  shopPod,
	24912: shopPod,
	29835: shopPod,
	10:    shopPod,
	11:    {ContainerID: strings.Repeat("ab", 32), PodUID: "11111111-2222-3333-4444-555555555555"},
	42:    {ContainerID: strings.Repeat("0f", 32), Runtime: container.RuntimeDocker},
	99:    hostilePod,
	1:     hostilePod,
}

// hostilePod has names with control characters and invalid UTF-8 (a
// directory name under /var/log/pods may hold anything).
var hostilePod = &container.Identity{ContainerID: testCID, PodUID: testUID, Namespace: "ns", Pod: "x\x1b[31m\"\\\xffpod",
	Container: "c\u2028"}

func (p testPods) Lookup(pid uint32, _ uint64, _ time.Time) *container.Identity { return p[pid] }

func TestIdentityJSON(t *testing.T) {
	for _, tc := range []struct {
		id   *container.Identity
		want string
	}{
		{nil, ""},
		{&container.Identity{}, ""},
		{shopPod, `,"container_id":"` + testCID + `","pod_uid":"` + testUID + `","namespace":"shop","pod":"cart-7d9f8b6c5-x2x4z","container":"app"`},
		{pods[42], `,"container_id":"` + strings.Repeat("0f", 32) + `"`},
		{pods[99], `,"container_id":"` + testCID + `","pod_uid":"` + testUID + `","namespace":"ns","pod":"x\u001b[31m\"\\\ufffdpod","container":"c` + "\u2028" + `"`},
	} {
		if got := string(appendIdentityJSON(nil, tc.id)); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
