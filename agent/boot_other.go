//go:build !linux

package agent

import (
	"errors"
	"time"
)

// bootClock is Linux-only; elsewhere persisted tokens are aged by the
// wall clock alone.
func bootClock() (string, time.Duration, error) {
	return "", 0, errors.New("no boot clock on this system")
}
