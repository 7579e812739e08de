// SPDX-License-Identifier: Apache-2.0

package output

import "io"

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
// can produce many records per second, so output is buffered: records are
// appended straight into the buffer (no copy, no allocation) and written
// when it holds bufSize bytes. Call Flush when done. A Printer is not safe
// for concurrent use.
type Printer[R any] struct {
	w       io.Writer
	f       RecordFormat[R]
	buf     []byte // not written yet
	err     error  // the first write error, returned ever after
	records uint64
	started bool
}

// bufSize is how much output is written at once.
const bufSize = 256 << 10

// NewPrinter returns a Printer writing f to w.
func NewPrinter[R any](w io.Writer, f RecordFormat[R]) *Printer[R] {
	return &Printer[R]{
		w:   w,
		f:   f,
		buf: make([]byte, 0, bufSize+4096),
	}
}

// Print writes r, preceded by the format's header if it is the first.
func (p *Printer[R]) Print(r *R) error {
	if err := p.Begin(); err != nil {
		return err
	}
	if p.err != nil {
		return p.err
	}
	p.buf = p.f.Append(p.buf, r)
	if len(p.buf) >= bufSize {
		if err := p.Flush(); err != nil {
			return err
		}
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
	if p.err != nil {
		return p.err
	}
	p.buf = append(p.buf, p.f.Header()...)
	return nil
}

// Flush writes any buffered output to the underlying writer.
func (p *Printer[R]) Flush() error {
	if p.err != nil || len(p.buf) == 0 {
		return p.err
	}
	n, err := p.w.Write(p.buf)
	if err == nil && n < len(p.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		p.err = err
		return err
	}
	p.buf = p.buf[:0]
	return nil
}

// Records returns the number of records printed.
func (p *Printer[R]) Records() uint64 { return p.records }
