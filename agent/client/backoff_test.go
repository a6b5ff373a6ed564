package client

import (
	"testing"
	"time"
)

func TestReconnectDelay(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		attempt  int
		r        float64
		min, max time.Duration
	}{
		{0, 0, 100 * ms, 100 * ms},
		{0, 0.999, 75 * ms, 100 * ms},
		{1, 0, 200 * ms, 200 * ms},
		{5, 0, 3200 * ms, 3200 * ms},
		{6, 0, 5 * time.Second, 5 * time.Second}, // capped
		{6, 0.999, 3750 * ms, 5 * time.Second},
		{1000, 0.5, 3750 * ms, 5 * time.Second}, // no overflow
	}
	for _, tt := range tests {
		if got := reconnectDelay(tt.attempt, tt.r); got < tt.min || got > tt.max {
			t.Errorf("reconnectDelay(%d, %v) = %v, want %v..%v", tt.attempt, tt.r, got, tt.min, tt.max)
		}
	}
}
