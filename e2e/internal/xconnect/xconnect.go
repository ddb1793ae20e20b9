// Package xconnect turns on net/http's HTTP/2 extended CONNECT (RFC 8441)
// for the e2e tests, by adding http2xconnect=1 to GODEBUG in the process's
// environment.
//
// Go 1.26's net/http reads that setting only from the environment variable,
// once, in its own init function: a //go:debug directive or a godebug line
// in go.mod is refused as an unknown setting, and setting the variable in
// TestMain is too late. Go initialises packages in import path order as far
// as their imports allow (the Go 1.21 rule): this package imports only os
// and strings, which net/http imports too, and its path
// (github.com/wsgate/wsgate/e2e/internal/xconnect) sorts before net/http,
// so a test that imports it for its side effect sets the variable before
// net/http reads it. It is for tests: a program should set GODEBUG in its
// environment when it starts.
package xconnect

import (
	"os"
	"strings"
)

func init() {
	v := os.Getenv("GODEBUG")
	if strings.Contains(v, "http2xconnect=") {
		return
	}
	if v != "" {
		v += ","
	}
	os.Setenv("GODEBUG", v+"http2xconnect=1")
}
