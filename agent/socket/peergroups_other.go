//go:build linux && !(amd64 || arm || arm64 || riscv64)

package socket

// peerGroups is unsupported here (no plain getsockopt system call): only
// the peer's uid and primary gid are checked.
func peerGroups(fd int) []int { return nil }
