// SPDX-License-Identifier: Apache-2.0

// Package connlimit caps the connections an http.Server keeps open. When
// a connection arrives over the cap, the one that has waited longest
// without a request in progress (idle between keep-alive requests, or
// opened and silent) is closed to make room; only when every connection
// is serving a request is the new one closed instead. So a client that
// opens and holds many connections costs the server at most the cap in
// file descriptors and memory, and cannot keep a scraper out: the
// scraper's connection is the newest.
//
// Unlike a listener that stops accepting at the cap
// (golang.org/x/net/netutil.LimitListener), which leaves the newcomers,
// scrapes included, queued in the kernel behind the held connections.
package connlimit

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter tracks a server's connections through its ConnState hook.
type Limiter struct {
	max     int
	mu      sync.Mutex
	conns   map[net.Conn]conn
	evicted atomic.Uint64
}

type conn struct {
	active bool
	since  time.Time // when it last became new or idle
}

// New returns a Limiter that keeps at most max connections (max >= 1).
func New(max int) *Limiter {
	return &Limiter{max: max, conns: make(map[net.Conn]conn, max+1)}
}

// Serve sets srv's ConnState hook to the limiter's (after any hook srv
// had) and returns srv.
func (l *Limiter) Serve(srv *http.Server) *http.Server {
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		l.ConnState(c, s)
		if prev != nil {
			prev(c, s)
		}
	}
	return srv
}

// ConnState is an http.Server ConnState hook. It is called for a new
// connection in the server's accept loop, before the connection is read.
func (l *Limiter) ConnState(c net.Conn, s http.ConnState) {
	var victim net.Conn
	l.mu.Lock()
	switch s {
	case http.StateNew:
		l.conns[c] = conn{since: time.Now()}
		if len(l.conns) > l.max {
			victim = l.oldestWaiting()
			if victim == nil {
				victim = c
			}
			delete(l.conns, victim)
		}
	case http.StateActive, http.StateIdle:
		// A connection already closed to make room is not taken back.
		if _, ok := l.conns[c]; ok {
			l.conns[c] = conn{active: s == http.StateActive, since: time.Now()}
		}
	case http.StateHijacked, http.StateClosed:
		delete(l.conns, c)
	}
	l.mu.Unlock()
	if victim != nil {
		l.evicted.Add(1)
		// Closing a TLS connection writes an alert, which a client that
		// does not read could hold up: not in the accept loop.
		go victim.Close()
	}
}

// oldestWaiting is the connection that has been idle or new the longest;
// nil when all are serving a request.
func (l *Limiter) oldestWaiting() net.Conn {
	var (
		oldest net.Conn
		since  time.Time
	)
	for c, st := range l.conns {
		if !st.active && (oldest == nil || st.since.Before(since)) {
			oldest, since = c, st.since
		}
	}
	return oldest
}

// Open is the number of connections the server keeps now.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Evicted is the number of connections closed to keep to the cap.
func (l *Limiter) Evicted() uint64 { return l.evicted.Load() }
