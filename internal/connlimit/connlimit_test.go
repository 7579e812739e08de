// SPDX-License-Identifier: Apache-2.0

package connlimit

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

func serve(t *testing.T, max int, h http.Handler) (*Limiter, string) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(max)
	srv := l.Serve(&http.Server{Handler: h})
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return l, ln.Addr().String()
}

// get sends one request on c and reads the answer.
func get(t *testing.T, c net.Conn, path string) {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closed reports whether the server closed c.
func closed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !os.IsTimeout(err)
}

// waitIdle waits until the server has seen n connections go idle: it
// says so after the client has its answer, from the connection's own
// goroutine, which a loaded machine may run late.
func waitIdle(t *testing.T, l *Limiter, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		l.mu.Lock()
		idle := 0
		for _, st := range l.conns {
			if !st.active {
				idle++
			}
		}
		l.mu.Unlock()
		if idle >= n {
			return
		}
	}
	t.Fatalf("%d connections not idle after 5 s", n)
}

// Over the cap, the connection idle longest is closed.
func TestIdleLongestGoes(t *testing.T) {
	l, addr := serve(t, 2, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	a, b := dial(t, addr), dial(t, addr)
	get(t, a, "/")
	get(t, b, "/")
	waitIdle(t, l, 2)
	get(t, a, "/") // b is now the one idle longest
	waitIdle(t, l, 2)
	c := dial(t, addr)
	get(t, c, "/")
	if !closed(b) || closed(a) || closed(c) {
		t.Errorf("closed: a %v b %v c %v; want b only", closed(a), closed(b), closed(c))
	}
	if l.Open() != 2 || l.Evicted() != 1 {
		t.Errorf("open %d, evicted %d; want 2 and 1", l.Open(), l.Evicted())
	}
}

// When every connection is serving a request, the newcomer is closed.
func TestActiveStay(t *testing.T) {
	release := make(chan struct{})
	_, addr := serve(t, 2, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	a, b := dial(t, addr), dial(t, addr)
	for _, c := range []net.Conn{a, b} {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	time.Sleep(100 * time.Millisecond)
	c := dial(t, addr)
	if !closed(c) {
		t.Error("newcomer kept while both connections serve a request")
	}
	close(release)
	for _, conn := range []net.Conn{a, b} {
		conn.SetReadDeadline(time.Time{})
		if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("request in progress: %v", err)
		}
	}
}
