package issuer

import (
	"testing"

	"go.uber.org/goleak"
)

// fasthttpOwn are the HTTP front's library goroutines that outlive a
// server by design: the Date header's once-a-second clock (one per
// process) and a stopped server's idle-worker sweeper, which ends at the
// end of its sleep (at most 10 s).
var fasthttpOwn = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
}

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, fasthttpOwn...) }
