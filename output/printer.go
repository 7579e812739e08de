// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bufio"
	"io"
)

// RecordFormat turns records of type R into bytes: Format for the
// transitions of 'trace' (tracer.Event), LifeFormat for the connections of
// 'life' (conn.Connection).
type RecordFormat[R any] interface {
	// Header is printed once before the first record; nil for none.
	Header() []byte
	// Append appends one record, including the trailing '\n', to dst.
	Append(dst []byte, r *R) []byte
}

// Printer writes records of type R in a RecordFormat[R]: a
// Printer[tracer.Event] prints transitions, a Printer[conn.Connection]
// connections, and neither can be given the other's records. A busy host
// can produce many records per second, so output is buffered and one
// scratch buffer is reused: printing a record does not allocate. Call
// Flush when done. A Printer is not safe for concurrent use.
type Printer[R any] struct {
	w       *bufio.Writer
	f       RecordFormat[R]
	buf     []byte
	records uint64
	started bool
}

// NewPrinter returns a Printer writing f to w.
func NewPrinter[R any](w io.Writer, f RecordFormat[R]) *Printer[R] {
	return &Printer[R]{
		w:   bufio.NewWriterSize(w, 256<<10),
		f:   f,
		buf: make([]byte, 0, 512),
	}
}

// Print writes r, preceded by the format's header if it is the first.
func (p *Printer[R]) Print(r *R) error {
	if err := p.Begin(); err != nil {
		return err
	}
	p.buf = p.f.Append(p.buf[:0], r)
	if _, err := p.w.Write(p.buf); err != nil {
		return err
	}
	p.records++
	return nil
}

// Begin writes the header now rather than before the first record, so a
// person sees the columns while waiting. It writes it only once.
func (p *Printer[R]) Begin() error {
	if p.started {
		return nil
	}
	p.started = true
	if h := p.f.Header(); h != nil {
		if _, err := p.w.Write(h); err != nil {
			return err
		}
	}
	return nil
}

// Flush writes any buffered output to the underlying writer.
func (p *Printer[R]) Flush() error { return p.w.Flush() }

// Records returns the number of records printed.
func (p *Printer[R]) Records() uint64 { return p.records }
