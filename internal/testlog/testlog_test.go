package testlog

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				fmt.Fprintf(&b, "w%d-%d\n", i, j)
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 400 {
		t.Fatalf("%d lines, want 400", n)
	}
}

func TestWaitForWakesOnWrite(t *testing.T) {
	var b Buffer
	log := b.Logger()
	go func() {
		log.Debug("starting")
		log.Info("connected and serving", "port", 1883)
	}()
	b.WaitFor(t, 10*time.Second, "nothing like this", "connected and serving")
	if !strings.Contains(b.String(), "level=DEBUG") {
		t.Errorf("Logger is not at debug level:\n%s", b.String())
	}
}

func TestWaitTimesOut(t *testing.T) {
	var b Buffer
	b.Write([]byte("hello\n"))
	if b.Wait(20*time.Millisecond, func(s string) bool { return strings.Contains(s, "bye") }) {
		t.Fatal("Wait reported a line that never came")
	}
	if !b.Wait(time.Second, func(s string) bool { return strings.Contains(s, "hello") }) {
		t.Fatal("Wait missed a line already written")
	}
}

func TestWaitStopsOnValue(t *testing.T) {
	var b Buffer
	stop := make(chan int, 1)
	stop <- 3
	err := wait(&b, 10*time.Second, stop, `["ready"]`, containsAny([]string{"ready"}))
	if err == nil || !strings.Contains(err.Error(), "got 3") || !strings.Contains(err.Error(), `["ready"]`) {
		t.Fatalf("wait with a value on stop: %v", err)
	}
	err = wait[struct{}](&b, 10*time.Millisecond, nil, `["ready"]`, containsAny([]string{"ready"}))
	if err == nil || !strings.Contains(err.Error(), `no ["ready"] in the log`) {
		t.Fatalf("wait past its timeout: %v", err)
	}
}
