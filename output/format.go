// SPDX-License-Identifier: Apache-2.0

// Package output turns tracer events into text: an aligned table for
// people and NDJSON for programs. Both formats append into a caller's
// buffer so that printing an event does not allocate.
package output

import (
	"fmt"
	"strconv"

	"github.com/tcpstate/tcpstate/tcp"
	"github.com/tcpstate/tcpstate/tracer"
)

// Format turns the transitions of 'tcpstate trace' into bytes.
type Format = RecordFormat[tracer.Event]

// Options change what the formats show.
type Options struct {
	// Seq adds the sequence numbers snd_una, snd_nxt and rcv_nxt.
	Seq bool
}

// New returns the format called name: "table" or "json".
func New(name string) (Format, error) { return NewWith(name, Options{}) }

// NewWith returns the format called name with options o.
func NewWith(name string, o Options) (Format, error) {
	switch name {
	case "table":
		f := NewTable().(*tableFormat)
		f.seq = o.Seq
		return f, nil
	case "json":
		f := NewJSON().(*jsonFormat)
		f.seq = o.Seq
		return f, nil
	}
	return nil, fmt.Errorf("unknown output format %q (want table or json)", name)
}

// appendState appends s.String() without the allocation String makes
// for states the kernel may add later.
func appendState(dst []byte, s tcp.State) []byte {
	if s >= tcp.Established && s <= tcp.NewSynRecv {
		return append(dst, s.String()...)
	}
	dst = append(dst, "STATE_"...)
	return strconv.AppendUint(dst, uint64(s), 10)
}
