// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bufio"
	"io"

	"github.com/tcpstate/tcpstate/conn"
	"github.com/tcpstate/tcpstate/tracer"
)

// Printer writes events in a Format. A busy host can produce many
// transitions per second, so output is buffered and one scratch buffer
// is reused: printing an event does not allocate. Call Flush when done.
// A Printer is not safe for concurrent use.
type Printer struct {
	w       *bufio.Writer
	f       Format
	lf      LifeFormat
	buf     []byte
	events  uint64
	started bool
}

// NewPrinter returns a Printer writing f to w.
func NewPrinter(w io.Writer, f Format) *Printer {
	return &Printer{
		w:   bufio.NewWriterSize(w, 256<<10),
		f:   f,
		buf: make([]byte, 0, 512),
	}
}

// NewLifePrinter returns a Printer writing connections in lf to w.
func NewLifePrinter(w io.Writer, lf LifeFormat) *Printer {
	p := NewPrinter(w, nil)
	p.lf = lf
	return p
}

// PrintConnection writes c, preceded by the header if it is the first.
func (p *Printer) PrintConnection(c *conn.Connection) error {
	if err := p.Begin(); err != nil {
		return err
	}
	p.buf = p.lf.AppendConnection(p.buf[:0], c)
	if _, err := p.w.Write(p.buf); err != nil {
		return err
	}
	p.events++
	return nil
}

// Print writes ev, preceded by the format's header if it is the first.
func (p *Printer) Print(ev *tracer.Event) error {
	if err := p.Begin(); err != nil {
		return err
	}
	p.buf = p.f.AppendEvent(p.buf[:0], ev)
	if _, err := p.w.Write(p.buf); err != nil {
		return err
	}
	p.events++
	return nil
}

// Begin writes the header now rather than before the first event, so a
// person sees the columns while waiting. It writes it only once.
func (p *Printer) Begin() error {
	if p.started {
		return nil
	}
	p.started = true
	var h []byte
	if p.f != nil {
		h = p.f.Header()
	} else {
		h = p.lf.Header()
	}
	if h != nil {
		if _, err := p.w.Write(h); err != nil {
			return err
		}
	}
	return nil
}

// Flush writes any buffered output to the underlying writer.
func (p *Printer) Flush() error { return p.w.Flush() }

// Events returns the number of events printed.
func (p *Printer) Events() uint64 { return p.events }
