//go:build !unix

package fleetsim

// RaiseFileLimit does nothing where there is no RLIMIT_NOFILE.
func RaiseFileLimit(need uint64) error { return nil }
