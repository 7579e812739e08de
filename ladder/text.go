// SPDX-License-Identifier: Apache-2.0

package ladder

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Text layout: a time column, the left side's states (right-aligned),
// the ladder between two bars, the right side's states, then notes.
const (
	textTime  = 10
	textState = 24
	textRung  = 46 // between the bars
)

// glyphs are the characters a text diagram is drawn with.
type glyphs struct {
	bar, line, dots, right, left, rst, top string
}

var (
	unicodeGlyphs = glyphs{bar: "│", line: "─", dots: "┈", right: "▶", left: "◀", rst: "✕", top: "┬"}
	asciiGlyphs   = glyphs{bar: "|", line: "-", dots: ".", right: ">", left: "<", rst: "x", top: "+"}
)

// Text draws d for a terminal.
func (r Render) Text(d *Diagram) string {
	var b strings.Builder
	g := unicodeGlyphs
	ttl := title(d)
	if r.ASCII {
		g = asciiGlyphs
		ttl = strings.ReplaceAll(ttl, "↔", "<->")
	}
	b.WriteString(ttl)
	b.WriteByte('\n')
	la, lo := endpointLabel(&d.Ends[Left])
	ra, ro := endpointLabel(&d.Ends[Right])
	r.line(&b, g, "ms", la, g.top, "", g.top, ra)
	r.line(&b, g, "", lo, g.bar, "", g.bar, ro)
	r.line(&b, g, "", stateName(d.Ends[Left].Initial), g.bar, "", g.bar, initialRight(d))
	for i := range d.Rows {
		row := &d.Rows[i]
		r.row(&b, g, d, row)
	}
	b.WriteString(Footer)
	b.WriteString("\n[STATE]: inferred. (ms): time spent in the previous state. " + numbersNote(r) + "\n")
	return b.String()
}

// initialRight is the right side's first state, in brackets if inferred.
func initialRight(d *Diagram) string {
	s := stateName(d.Ends[Right].Initial)
	if d.Ends[Right].Inferred {
		return "[" + s + "]"
	}
	return s
}

// FollowText draws rows of d for --follow, each line prefixed with
// #d.Num; the first time with a title.
func (r Render) FollowText(d *Diagram, rows []Row, first bool) string {
	var b strings.Builder
	g := unicodeGlyphs
	if r.ASCII {
		g = asciiGlyphs
	}
	prefix := "#" + strconv.Itoa(d.Num) + " "
	if first {
		// Whether the peer is on this host and when the connection
		// ends are not known yet.
		la, lo := endpointLabel(&d.Ends[Left])
		ra, _ := endpointLabel(&d.Ends[Right])
		ttl := "TCP " + la + " (" + lo + ") ↔ " + ra
		if r.ASCII {
			ttl = strings.ReplaceAll(ttl, "↔", "<->")
		}
		b.WriteString(prefix + ttl + "\n")
	}
	for i := range rows {
		var line strings.Builder
		r.row(&line, g, d, &rows[i])
		b.WriteString(prefix + line.String())
	}
	return b.String()
}

// FollowEnd is the line --follow ends a connection with.
func (r Render) FollowEnd(d *Diagram) string {
	switch {
	case d.TimeWait:
		return "#" + strconv.Itoa(d.Num) + " ended, TIME_WAIT still running\n"
	case d.Open:
		return "#" + strconv.Itoa(d.Num) + " still open when drawn (tracing ended)\n"
	}
	return "#" + strconv.Itoa(d.Num) + " ended\n"
}

func (r Render) row(b *strings.Builder, g glyphs, d *Diagram, row *Row) {
	t := ""
	if !row.Time.IsZero() {
		t = msSince(row.Time, d.Start)
	}
	left := leftState(row.Enter[Left])
	right := rightState(row.Enter[Right])
	var rung string
	switch row.Kind {
	case Arrow:
		head := g.right
		if row.Seg == RST {
			head = g.rst
		}
		rung = arrow(g.line, r.arrowLabel(d, row), head, row.From == Left, g)
	case Data:
		rung = arrow(g.dots, dataLabel(row), g.right, row.From == Left, g)
	default:
		rung = strings.Repeat(" ", textRung)
	}
	r.line(b, g, t, left, g.bar, rung, g.bar, right+pad(right, r.noteLabel(row)))
}

// pad separates a note from the state before it.
func pad(state, note string) string {
	if note == "" {
		return ""
	}
	n := 24 - utf8.RuneCountInString(state)
	if state == "" {
		n = 24
	}
	return strings.Repeat(" ", max(n, 1)) + note
}

func leftState(c Change) string {
	s := stateLabel(c)
	if p := inPrevLabel(c); p != "" {
		s = "(" + p + ") " + s
	}
	return s
}

func rightState(c Change) string {
	s := stateLabel(c)
	if p := inPrevLabel(c); p != "" {
		s += " (" + p + ")"
	}
	return s
}

// arrow is a rung textRung wide: the label centred on a line, with the
// head at the receiver's end. A label too long for the rung widens it.
func arrow(line, label, head string, toRight bool, g glyphs) string {
	label = " " + label + " "
	fill := textRung - 2 - utf8.RuneCountInString(label)
	fill = max(fill, 2)
	a, c := fill/2, fill-fill/2
	if toRight {
		return strings.Repeat(line, a+1) + label + strings.Repeat(line, c) + head
	}
	if head == g.right {
		head = g.left
	}
	return head + strings.Repeat(line, a) + label + strings.Repeat(line, c+1)
}

// line writes one text line: time, left, bar, rung, bar, right; without
// trailing blanks.
func (r Render) line(b *strings.Builder, g glyphs, t, left, bar1, rung, bar2, right string) {
	var l strings.Builder
	l.WriteString(strings.Repeat(" ", max(textTime-utf8.RuneCountInString(t), 0)))
	l.WriteString(t)
	l.WriteByte(' ')
	l.WriteString(strings.Repeat(" ", max(textState-utf8.RuneCountInString(left), 0)))
	l.WriteString(left)
	l.WriteByte(' ')
	l.WriteString(bar1)
	if rung == "" {
		rung = strings.Repeat(" ", textRung)
	}
	l.WriteString(rung)
	l.WriteString(bar2)
	if right != "" {
		l.WriteByte(' ')
		l.WriteString(right)
	}
	b.WriteString(strings.TrimRight(l.String(), " "))
	b.WriteByte('\n')
}
