// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// outputWriter is standard output as the commands write to it: a failed
// write says "write output: ..." (so the error reads "tcpstate: write
// output: bad file descriptor"). A reader that went away (EPIPE) is still
// told apart by isReaderGone.
type outputWriter struct{ w io.Writer }

func (o outputWriter) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil {
		err = writeError(err)
	}
	return n, err
}

func writeError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // "write /dev/stdout: " says nothing more
	}
	return fmt.Errorf("write output: %w", err)
}

// checkOutput fails now, rather than at the first record, when standard
// output cannot be written: a write of no bytes fails as any write would
// (EBADF when fd 1 is open read-only, ENOSPC on /dev/full) and writes
// nothing. A closed pipe is left for isReaderGone.
func checkOutput(w io.Writer) error {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	if _, err := f.Write(nil); err != nil && !errors.Is(err, syscall.EPIPE) {
		return writeError(err)
	}
	return nil
}
