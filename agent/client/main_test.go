package client_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the watch helper when asked to (see
// TestWatchEndsWhenForbidden), and otherwise the tests, failing them if
// any goroutine outlives them.
func TestMain(m *testing.M) {
	if path := os.Getenv(watchHelperEnv); path != "" {
		os.Exit(watchHelper(path))
	}
	goleak.VerifyTestMain(m)
}
