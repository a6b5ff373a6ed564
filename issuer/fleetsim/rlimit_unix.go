//go:build unix

package fleetsim

import (
	"fmt"
	"syscall"
)

// RaiseFileLimit raises the soft open-file limit to the hard limit and
// reports an error if that still leaves fewer than need descriptors (one
// per simulated device, plus some).
func RaiseFileLimit(need uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("open-file limit: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return fmt.Errorf("raise open-file limit to %d: %w", l.Max, err)
		}
	}
	if l.Cur < need {
		return fmt.Errorf("open-file limit is %d, the simulation needs %d (raise it with ulimit -n or LimitNOFILE)", l.Cur, need)
	}
	return nil
}
