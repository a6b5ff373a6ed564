package issuer

import "sync"

// Bounds of the MQTT request path (Options.QueueSize, Options.DeviceQueue).
const (
	// defaultQueueSize bounds the requests taken and not yet answered
	// (queued, being handled, or with their reply awaiting its PUBACK).
	// Each holds at most limits.max_payload bytes (16 KiB by default),
	// so the requests in flight hold at most 128 MiB (an agent's request
	// is about 60 bytes: a 10,000-device boot storm holds well under
	// 1 MiB). Sized for a fleet booting at once: a storm beyond it is
	// answered unavailable (retry_after 1) and the agents come back.
	defaultQueueSize = 8192
	// defaultDeviceQueue bounds them per device: an agent has one
	// request out at a time (two while a retry overlaps a late reply).
	defaultDeviceQueue = 8
	// refusalQueue bounds the refusals waiting to be published. A
	// refusal that does not fit is not answered (it is counted).
	refusalQueue = 4096
)

// admission counts the requests taken and not yet answered, in total and
// per device, so that a flood is shed at the door instead of queued: a
// request beyond either bound is refused at once. Once closed, it admits
// nothing and reports when the last request is done.
type admission struct {
	mu        sync.Mutex
	total     int
	perDevice map[string]int
	maxTotal  int
	maxDevice int
	closed    bool
	idle      chan struct{} // closed once closed and total is 0
}

func newAdmission(maxTotal, maxDevice int) *admission {
	return &admission{perDevice: map[string]int{}, maxTotal: maxTotal, maxDevice: maxDevice,
		idle: make(chan struct{})}
}

// Reasons add refuses a request.
const (
	admitOK = iota
	admitDeviceFull
	admitQueueFull
	admitClosed
)

// add takes a request of device if the bounds allow it.
func (a *admission) add(device string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.closed:
		return admitClosed
	case a.total >= a.maxTotal:
		return admitQueueFull
	case a.perDevice[device] >= a.maxDevice:
		return admitDeviceFull
	}
	a.total++
	a.perDevice[device]++
	return admitOK
}

// done releases a request of device taken by add.
func (a *admission) done(device string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if n := a.perDevice[device] - 1; n > 0 {
		a.perDevice[device] = n
	} else {
		delete(a.perDevice, device)
	}
	if a.closed && a.total == 0 {
		close(a.idle)
	}
}

// close stops admitting and returns a channel closed once every request
// taken is done.
func (a *admission) close() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.closed {
		a.closed = true
		if a.total == 0 {
			close(a.idle)
		}
	}
	return a.idle
}

// inFlight returns how many requests are taken and not yet done.
func (a *admission) inFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}
