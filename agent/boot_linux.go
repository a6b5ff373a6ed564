package agent

import (
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// bootClock reads the kernel's boot id and CLOCK_BOOTTIME: together they
// measure time across an agent restart (not a reboot), suspend included.
func bootClock() (string, time.Duration, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", 0, fmt.Errorf("boot id: %w", err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return "", 0, fmt.Errorf("boot clock: %w", err)
	}
	return strings.TrimSpace(string(b)), time.Duration(ts.Nano()), nil
}
