// SPDX-License-Identifier: Apache-2.0

// Package tcpstate holds the code generation step: bpf2go compiles bpf/ and
// writes the Go bindings into tracer/. The generated files are committed, so
// plain `go build` needs no clang; run `make generate` after changing bpf/.
package tcpstate

//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -output-dir tracer -go-package tracer -type event -type owner -type counter -type tallies -type hist -type sock_info -type tw_key -type conn_path tcpstate bpf/tcpstate.bpf.c -- -I bpf
