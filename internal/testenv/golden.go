// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"bytes"
	"os"
	"testing"
)

// CheckGolden compares got with the golden file path, rewriting the file
// first when update is set (a test binary's -update flag).
func CheckGolden(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run with -update after checking):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
