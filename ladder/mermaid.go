// SPDX-License-Identifier: Apache-2.0

package ladder

import "strings"

// Mermaid draws d as a Mermaid sequenceDiagram in a ```mermaid block, which
// GitHub and GitLab render in markdown. States are notes beside their
// side: the sender's before its arrow (it entered the state by sending),
// the receiver's after it.
func (r Render) Mermaid(d *Diagram) string {
	var b strings.Builder
	b.WriteString("```mermaid\nsequenceDiagram\n")
	b.WriteString("    title " + mermaidText(title(d)) + "\n")
	for s, id := range [...]string{"L", "R"} {
		addr, owner := endpointLabel(&d.Ends[s])
		b.WriteString("    participant " + id + " as " + mermaidText(addr) + "<br/>" + mermaidText(owner) + "\n")
	}
	note := func(s Side, text string) {
		if text == "" {
			return
		}
		where := "left of L"
		if s == Right {
			where = "right of R"
		}
		b.WriteString("    Note " + where + ": " + mermaidText(text) + "\n")
	}
	note(Left, stateName(d.Ends[Left].Initial))
	note(Right, initialRight(d))
	for i := range d.Rows {
		row := &d.Rows[i]
		at := ""
		if !row.Time.IsZero() {
			at = " at " + fmtDuration(since(row.Time, d.Start))
		}
		from, to := "L", "R"
		if row.From == Right {
			from, to = to, from
		}
		switch row.Kind {
		case Arrow:
			note(row.From, mermaidState(row.Enter[row.From]))
			line := "->>"
			if row.Seg == RST {
				line = "-x"
			}
			b.WriteString("    " + from + line + to + ": " + mermaidText(r.arrowLabel(d, row)+at) + "\n")
			note(row.From.other(), mermaidState(row.Enter[row.From.other()]))
		case Data:
			b.WriteString("    " + from + "-->>" + to + ": " + mermaidText(dataLabel(row)) + "\n")
		case Local:
			note(row.From, mermaidState(row.Enter[row.From])+at)
		}
		if n := r.noteLabel(row); n != "" {
			b.WriteString("    Note over L,R: " + mermaidText(n) + "\n")
		}
	}
	b.WriteString("    Note over L,R: " + mermaidText(Footer) + "\n```\n")
	return b.String()
}

// mermaidState is a state entered and the time spent in the one before.
func mermaidState(c Change) string {
	s := stateLabel(c)
	if p := inPrevLabel(c); p != "" {
		s += " (" + p + " in " + stateName(c.Prev) + ")"
	}
	return s
}

// mermaidText keeps text from ending a Mermaid statement early: '#'
// starts a comment or entity, ';' ends a statement, "%%" is a comment,
// and '<' '>' would be read as markup.
func mermaidText(s string) string {
	return strings.NewReplacer("#", "", ";", ",", "%%", "%", "<", "‹", ">", "›").Replace(s)
}
