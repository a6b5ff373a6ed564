//go:build linux && (amd64 || arm || arm64 || riscv64)

package socket

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// peerGroups returns the supplementary groups of fd's peer
// (SO_PEERGROUPS, Linux 4.13+), nil if the kernel cannot tell. Without it
// a media process that reaches the socket through a supplementary group
// (systemd's SupplementaryGroups=) would be refused.
func peerGroups(fd int) []int {
	buf := make([]uint32, 64)
	for {
		n := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET,
			unix.SO_PEERGROUPS, uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		if errno == unix.ERANGE && int(n/4) > len(buf) {
			buf = make([]uint32, n/4)
			continue
		}
		if errno != 0 {
			return nil
		}
		groups := make([]int, 0, n/4)
		for _, g := range buf[:n/4] {
			groups = append(groups, int(g))
		}
		return groups
	}
}
