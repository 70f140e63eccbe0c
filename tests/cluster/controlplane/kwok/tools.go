//go:build tools

// Package tools pins the kwok main packages that build.sh compiles, so that
// `go mod tidy` keeps every module they need in go.mod and go.sum.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
	_ "sigs.k8s.io/kwok/cmd/kwokctl"
)
