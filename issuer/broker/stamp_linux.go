package broker

import (
	"io/fs"
	"syscall"
)

// sysStamp returns the device, inode and ctime (Unix nanoseconds) of a
// stat result.
func sysStamp(fi fs.FileInfo) (dev, ino uint64, ctime int64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0
	}
	return uint64(st.Dev), uint64(st.Ino), st.Ctim.Nano()
}
