package issuer

import "sync"

// Bounds of the MQTT request path (Options.QueueSize, Options.DeviceQueue).
const (
	// defaultQueueSize bounds the requests taken and not yet answered
	// (queued, being handled, or with their reply awaiting its PUBACK),
	// and defaultQueueBytes their payloads: an agent's request is about
	// 60 bytes, so a whole fleet booting at once fits, while requests as
	// large as limits.max_payload allows fill the byte bound first.
	// Beyond either, a request is answered unavailable (retry_after 1)
	// and its agent comes back.
	defaultQueueSize  = 65536
	defaultQueueBytes = 64 << 20
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
	bytes     int
	perDevice map[string]int
	maxTotal  int
	maxBytes  int
	maxDevice int
	closed    bool
	idle      chan struct{} // closed once closed and total is 0
}

func newAdmission(maxTotal, maxBytes, maxDevice int) *admission {
	return &admission{perDevice: map[string]int{}, maxTotal: maxTotal, maxBytes: maxBytes, maxDevice: maxDevice,
		idle: make(chan struct{})}
}

// Reasons add refuses a request.
const (
	admitOK = iota
	admitDeviceFull
	admitQueueFull
	admitClosed
)

// add takes a request of device, size bytes, if the bounds allow it.
func (a *admission) add(device string, size int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.closed:
		return admitClosed
	case a.total >= a.maxTotal || a.bytes+size > a.maxBytes:
		return admitQueueFull
	case a.perDevice[device] >= a.maxDevice:
		return admitDeviceFull
	}
	a.total++
	a.bytes += size
	a.perDevice[device]++
	return admitOK
}

// done releases a request of device, size bytes, taken by add.
func (a *admission) done(device string, size int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	a.bytes -= size
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
