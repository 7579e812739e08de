// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"net/netip"
	"testing"

	"github.com/tcpstate/tcpstate/tcp"
)

// A listener's drops count once: all of them when first seen, then what
// each scrape adds; a listener gone keeps its count, a new one at its
// address starts from its own.
func TestListenDropsCounter(t *testing.T) {
	var d listenDrops
	a := listenerKey{netns: 1, inode: 10, addr: netip.MustParseAddr("0.0.0.0"), port: 80}
	b := listenerKey{netns: 1, inode: 11, addr: netip.MustParseAddr("::"), port: 80}
	nginx := stuckKey{where{state: tcp.Listen}, "nginx"}
	steps := []struct {
		ls   []listenerDrops
		want uint64
	}{
		{[]listenerDrops{{a, nginx, 5}}, 5},
		{[]listenerDrops{{a, nginx, 7}, {b, nginx, 1}}, 8},
		{[]listenerDrops{{b, nginx, 1}}, 8},  // a gone
		{[]listenerDrops{{a, nginx, 2}}, 10}, // a new listener with a's key; b gone
	}
	for i, s := range steps {
		d.add(s.ls)
		if got := d.totals[nginx]; got != s.want {
			t.Errorf("scrape %d: %d, want %d", i, got, s.want)
		}
	}
}
