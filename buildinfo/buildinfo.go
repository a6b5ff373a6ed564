// Package buildinfo carries the version stamped into the binaries at link
// time (make build sets Version with -ldflags -X).
package buildinfo

// Version is the release version, or "dev" for an unstamped build.
var Version = "dev"
