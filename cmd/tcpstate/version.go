// SPDX-License-Identifier: Apache-2.0

package main

import "runtime/debug"

// version is baked in at build time (make: -ldflags "-X main.version=...",
// from git describe); a plain go build leaves it empty.
var version string

// buildVersion is tcpstate's version: the baked-in one, else what the Go
// toolchain stamped (a module version, or a VCS pseudo-version), else
// "unknown".
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "unknown"
}
