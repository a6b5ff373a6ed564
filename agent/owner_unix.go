//go:build unix

package agent

import (
	"os"
	"syscall"
)

// fileOwner is the uid owning a file, where the system tells it.
func fileOwner(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
