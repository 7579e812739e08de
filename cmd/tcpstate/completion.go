// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// addCompletion adds cobra's 'completion' command (bash, zsh, fish,
// powershell), with its bad arguments usage errors, and completes the
// values of the flags that take one of a known set on every command:
// --state, --output, ls --by; --netns and the --netns files' directory,
// files elsewhere.
func addCompletion(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		// Without a shell, or with another, cobra would print the help
		// and exit 0.
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("completion: name a shell: bash, zsh, fish or powershell")
			}
			return usagef("completion: unknown shell %q: want bash, zsh, fish or powershell", args[0])
		}
		for _, sh := range c.Commands() {
			check := sh.Args
			sh.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					return usageError{err}
				}
				return nil
			}
		}
	}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		fs := c.LocalNonPersistentFlags()
		if fs.Lookup("state") != nil {
			_ = c.RegisterFlagCompletionFunc("state", completeList(stateNames()))
		}
		if fs.Lookup("output") != nil {
			formats := []string{"table", "json"}
			if c.Name() == "ladder" {
				formats = []string{"text", "mermaid", "svg"}
			}
			_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
		}
		if fs.Lookup("by") != nil {
			_ = c.RegisterFlagCompletionFunc("by", cobra.FixedCompletions([]string{"process", "remote", "local", "pod"}, cobra.ShellCompDirectiveNoFileComp))
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// completeList completes the last item of a comma-separated list.
func completeList(words []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		done := ""
		if i := strings.LastIndexByte(toComplete, ','); i >= 0 {
			done = toComplete[:i+1]
		}
		out := make([]cobra.Completion, 0, len(words))
		for _, w := range words {
			out = append(out, done+w)
		}
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
}

// stateNames are the TCP states as tcpstate prints them.
func stateNames() []string {
	return strings.Split(stateList(), ", ")
}
