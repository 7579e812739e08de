// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstate/tcpstate/snapshot"
	"github.com/tcpstate/tcpstate/tcp"
)

// tcpstate_listen_drops_total{comm} counts the SYNs and handshake ACKs the
// kernel dropped for listeners (their accept queue full, mostly), per
// process name of the listener's holder, from each listener's own count
// (sk_drops, read at each scrape): a listener's drops since it exists when
// first seen, then what it adds. A listener gone keeps what it counted.

// listenerKey tells a listener from another while it lives.
type listenerKey struct {
	netns uint32
	inode uint64
	addr  netip.Addr
	port  uint16
}

// listenerDrops is one listener of a snapshot that dropped something.
type listenerDrops struct {
	key   listenerKey
	where stuckKey // where.state is LISTEN; comm of its first holder
	drops uint32
}

// listenDrops are the totals, kept between scrapes.
type listenDrops struct {
	mu     sync.Mutex
	last   map[listenerKey]uint32 // each live listener's count at the last scrape
	totals map[stuckKey]uint64
}

// dropsOf says whether s is a listener that dropped something.
func dropsOf(s *snapshot.Socket) bool {
	return s.State == tcp.Listen && s.HasDrops && s.Drops > 0
}

// newListener makes the record of a listener whose holders are known.
func newListener(s *snapshot.Socket, w where) listenerDrops {
	comm := ""
	for _, o := range s.Owners {
		if comm == "" || o.Comm < comm {
			comm = o.Comm
		}
	}
	return listenerDrops{key: listenerKey{s.NetNS, s.Inode, s.LAddr, s.LPort}, where: stuckKey{w, comm}, drops: s.Drops}
}

// add takes the listeners of one snapshot into the totals.
func (d *listenDrops) add(ls []listenerDrops) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		d.last, d.totals = map[listenerKey]uint32{}, map[stuckKey]uint64{}
	}
	seen := make(map[listenerKey]uint32, len(ls))
	for _, l := range ls {
		before, ok := d.last[l.key]
		if !ok || l.drops < before {
			before = 0 // new (or its address reused by a new listener)
		}
		d.totals[l.where] += uint64(l.drops - before)
		seen[l.key] = l.drops
	}
	d.last = seen
}

// collect sends the totals.
func (c *Collector) collectListenDrops(ch chan<- prometheus.Metric) {
	c.drops.mu.Lock()
	defer c.drops.mu.Unlock()
	for _, k := range sortedKeys(c.drops.totals) {
		ch <- prometheus.MustNewConstMetric(c.listenDropsDesc, prometheus.CounterValue, float64(c.drops.totals[k]), c.labels(k.where, k.comm)...)
	}
}
