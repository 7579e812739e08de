// SPDX-License-Identifier: Apache-2.0

package ladder_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tcpstate/tcpstate/internal/testenv"
	"github.com/tcpstate/tcpstate/ladder"
	"github.com/tcpstate/tcpstate/tracer"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// checkGolden compares got with testdata/name.golden (rewritten with
// -update).
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	testenv.CheckGolden(t, filepath.Join("testdata", name+".golden"), got, *update)
}

// recordings are the live tests' events (go test -record), one file per
// path of the article and family.
func recordings(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.jsonl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recordings in testdata: %v", err)
	}
	return files
}

// replayFile draws the connections of a recording.
func replayFile(t *testing.T, path string, keep func(*tracer.Event) bool) []ladder.Diagram {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out diagrams
	tr := ladder.NewTracker(&out, ladder.Options{})
	var h tracerHandler = tr
	if keep != nil {
		h = filtered{tr, keep}
	}
	if err := ladder.Replay(context.Background(), f, h); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(out.ds) != 1 {
		t.Fatalf("%s: %d diagrams, want 1", path, len(out.ds))
	}
	return out.ds
}

type tracerHandler interface {
	Event(*tracer.Event) error
	Tick() error
}

// filtered passes on the events keep accepts.
type filtered struct {
	h    tracerHandler
	keep func(*tracer.Event) bool
}

func (f filtered) Event(ev *tracer.Event) error {
	if f.keep(ev) {
		return f.h.Event(ev)
	}
	return nil
}
func (f filtered) Tick() error { return f.h.Tick() }

// TestGolden draws every recording in every format.
func TestGolden(t *testing.T) {
	for _, path := range recordings(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".jsonl")
		t.Run(name, func(t *testing.T) {
			d := &replayFile(t, path, nil)[0]
			checkGolden(t, name+".txt", []byte(ladder.Render{}.Text(d)))
			checkGolden(t, name+"-ascii-relative.txt", []byte(ladder.Render{ASCII: true, Relative: true}.Text(d)))
			checkGolden(t, name+".mmd", []byte(ladder.Render{}.Mermaid(d)))
			checkGolden(t, name+".svg", []byte(ladder.Render{}.SVG(d)))
		})
	}
}

// TestInferredPeer draws each recording from one socket alone, as for a
// peer on another host: the peer's inferred states must be the ones it
// really went through, at the same rows.
func TestInferredPeer(t *testing.T) {
	for _, path := range recordings(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".jsonl")
		t.Run(name, func(t *testing.T) {
			both := &replayFile(t, path, nil)[0]
			client := both.Ends[ladder.Left].Addr
			alone := &replayFile(t, path, func(ev *tracer.Event) bool {
				return ev.LPort == client.Port()
			})[0]
			checkGolden(t, name+"-alone.txt", []byte(ladder.Render{}.Text(alone)))
			if !alone.Ends[ladder.Right].Inferred {
				t.Errorf("peer not marked inferred")
			}
			if both.Ends[ladder.Right].Inferred || strings.HasPrefix(name, "simultaneous") {
				// The peer was not on this host in the recording either;
				// or, for the simultaneous close, the client's first FIN
				// was dropped, so the server saw no crossing, which the
				// client alone cannot tell.
				return
			}
			got, want := stateRows(alone), stateRows(both)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("inferred:\n%s\nseen:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// stateRows are the rows as rowString gives them, with each side's
// states (inferred or not).
func stateRows(d *ladder.Diagram) []string {
	var out []string
	for i := range d.Rows {
		r := d.Rows[i]
		for s := range r.Enter {
			r.Enter[s].Inferred = false
		}
		out = append(out, rowString(&r))
	}
	return out
}

// The README's Ladder section shows a real diagram, exactly as drawn.
func TestREADMEShowsDiagrams(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"half-close-late-tcp4.txt.golden", "half-close-late-tcp4.mmd.golden"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(readme, b) {
			t.Errorf("README.md does not show testdata/%s as drawn now", name)
		}
	}
}

// mermaidLine is every statement Mermaid's sequenceDiagram grammar takes
// that the renderer writes; text never holds '#' (a comment or entity),
// ';' (the end of a statement) or "%%" (a comment).
var mermaidLine = regexp.MustCompile("^(```mermaid|sequenceDiagram|```" +
	`|    title [^#;]+` +
	`|    participant [LR] as [^#;]+` +
	`|    Note (left of L|right of R|over L,R): [^#;]+` +
	`|    [LR](->>|-->>|-x)[LR]: [^#;]+)$`)

func TestMermaidGrammar(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.mmd.golden"))
	if err != nil || len(files) == 0 {
		t.Fatal("no mermaid golden files")
	}
	check := func(name, text string) {
		for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			if !mermaidLine.MatchString(line) || strings.Contains(line, "%%") {
				t.Errorf("%s:%d: not a statement the renderer should write: %q", name, i+1, line)
			}
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		check(f, string(b))
	}
	// A process names itself: its name must not break the diagram.
	d := &replayFile(t, filepath.Join("testdata", "half-close-tcp4.jsonl"), func(ev *tracer.Event) bool {
		if ev.Pid != 0 {
			ev.Comm = "a;b#c%%d<br/>\n"
		}
		return true
	})[0]
	check("hostile comm", ladder.Render{}.Mermaid(d))
	if strings.Contains(ladder.Render{}.SVG(d), "<br/>") {
		t.Error("comm markup reached the SVG")
	}
}
