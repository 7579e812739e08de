// SPDX-License-Identifier: Apache-2.0

package ladder

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// SVG layout, in pixels: a monospace font of svgFont px is about
// svgChar px a character.
const (
	svgFont   = 13
	svgChar   = 7.9
	svgMargin = 16
	svgTimeX  = 90  // right edge of the time column
	svgLeftX  = 330 // the left side's line
	svgRightX = 760 // the right side's line
	svgRow    = 34
	svgTop    = 124 // first row
	svgSlant  = 8   // how far an arrow falls from sender to receiver
)

// SVG draws d as a standalone SVG picture: the two sides' lines, a slanted
// arrow per segment, states beside the lines, notes on the right.
func (r Render) SVG(d *Diagram) string {
	notesX := float64(svgRightX) + 10 + 26*svgChar
	longest := utf8.RuneCountInString(Footer)
	for i := range d.Rows {
		longest = max(longest, utf8.RuneCountInString(r.noteLabel(&d.Rows[i]))+int((notesX-svgMargin)/svgChar))
	}
	width := int(float64(longest)*svgChar) + 2*svgMargin
	height := svgTop + (len(d.Rows)+1)*svgRow + 3*svgFont + 2*svgMargin
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="%d">`+"\n",
		width, height, width, height, svgFont)
	b.WriteString(`<defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" markerHeight="9" orient="auto"><path d="M0,0L10,5L0,10z" fill="#222"/></marker>` +
		`<marker id="rst" viewBox="0 0 10 10" refX="5" refY="5" markerWidth="10" markerHeight="10" orient="auto"><path d="M1,1L9,9M9,1L1,9" stroke="#c00" stroke-width="2"/></marker></defs>` + "\n")
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", svgMargin, svgMargin+svgFont, xmlText(title(d)))

	// The two sides: a box with address and owner, and a line down.
	bottom := svgTop + len(d.Rows)*svgRow
	for s, x := range [...]int{svgLeftX, svgRightX} {
		addr, owner := endpointLabel(&d.Ends[s])
		w := float64(max(utf8.RuneCountInString(addr), utf8.RuneCountInString(owner)))*svgChar + 16
		fmt.Fprintf(&b, `<rect x="%.1f" y="34" width="%.1f" height="40" rx="4" fill="#eef3fb" stroke="#225"/>`+"\n", float64(x)-w/2, w)
		fmt.Fprintf(&b, `<text x="%d" y="50" text-anchor="middle">%s</text>`+"\n", x, xmlText(addr))
		fmt.Fprintf(&b, `<text x="%d" y="67" text-anchor="middle" fill="#555">%s</text>`+"\n", x, xmlText(owner))
		fmt.Fprintf(&b, `<line x1="%d" y1="74" x2="%d" y2="%d" stroke="#225" stroke-width="2"/>`+"\n", x, x, bottom)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" fill="#555">ms</text>`+"\n", svgTimeX, svgTop-svgRow+4)
	r.svgState(&b, Left, svgTop-svgRow+4, stateName(d.Ends[Left].Initial), false)
	r.svgState(&b, Right, svgTop-svgRow+4, strings.Trim(initialRight(d), "[]"), d.Ends[Right].Inferred)

	for i := range d.Rows {
		row := &d.Rows[i]
		y := svgTop + i*svgRow
		if !row.Time.IsZero() {
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" fill="#555">%s</text>`+"\n", svgTimeX, y+4, msSince(row.Time, d.Start))
		}
		x1, x2 := svgLeftX, svgRightX
		if row.From == Right {
			x1, x2 = x2, x1
		}
		switch row.Kind {
		case Arrow:
			stroke, marker := "#222", "head"
			if row.Seg == RST {
				stroke, marker = "#c00", "rst"
			}
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.6" marker-end="url(#%s)"/>`+"\n",
				x1, y-svgSlant/2, x2, y+svgSlant/2, stroke, marker)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="%s">%s</text>`+"\n",
				(svgLeftX+svgRightX)/2, y-svgSlant/2-4, stroke, xmlText(r.arrowLabel(d, row)))
		case Data:
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#777" stroke-width="1.2" stroke-dasharray="5,4" marker-end="url(#head)"/>`+"\n",
				x1, y, x2, y)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", (svgLeftX+svgRightX)/2, y-4, xmlText(dataLabel(row)))
		case Local:
			x := svgLeftX
			if row.From == Right {
				x = svgRightX
			}
			fmt.Fprintf(&b, `<circle cx="%d" cy="%d" r="4" fill="#225"/>`+"\n", x, y)
		}
		for s := Left; s <= Right; s++ {
			c := row.Enter[s]
			if c.State == 0 {
				continue
			}
			text := stateName(c.State)
			if p := inPrevLabel(c); p != "" {
				if s == Left {
					text = "(" + p + ") " + text
				} else {
					text += " (" + p + ")"
				}
			}
			r.svgState(&b, s, y+4, text, c.Inferred)
		}
		if n := r.noteLabel(row); n != "" {
			fill := "#333"
			if row.Warn {
				fill = "#c00"
			}
			fmt.Fprintf(&b, `<text x="%.0f" y="%d" fill="%s">%s</text>`+"\n", notesX, y+4, fill, xmlText(n))
		}
	}
	y := bottom + svgRow
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">%s</text>`+"\n", svgMargin, y, xmlText(Footer))
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">%s</text>`+"\n", svgMargin, y+svgFont+6,
		xmlText("Grey italic: inferred state. (ms): time spent in the previous state. "+numbersNote(r)))
	b.WriteString("</svg>\n")
	return b.String()
}

// svgState writes a state beside side s's line.
func (r Render) svgState(b *strings.Builder, s Side, y int, text string, inferred bool) {
	style := `font-weight="bold" fill="#123"`
	if inferred {
		style = `font-style="italic" fill="#888"`
	}
	if s == Left {
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="end" %s>%s</text>`+"\n", svgLeftX-10, y, style, xmlText(text))
		return
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" %s>%s</text>`+"\n", svgRightX+10, y, style, xmlText(text))
}

// numbersNote says how seq and ack are numbered.
func numbersNote(r Render) string {
	if r.Relative {
		return "Numbers are relative to each side's ISN."
	}
	return "Numbers are absolute (as tcpdump -S)."
}

// xmlText escapes text for an XML text node.
func xmlText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
