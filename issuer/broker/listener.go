package broker

import (
	"net"
	"sync"
)

// closingListener is the broker's TCP listener. When it is closed it also
// closes every connection it accepted that is still open. mochi drops,
// without closing it, a connection it accepts while it stops: the device
// would wait for a CONNACK until its own connect timeout instead of
// seeing the broker go and dialing again (seen when the embedded broker
// restarts in-process, as the tests do).
type closingListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func newClosingListener(l net.Listener) *closingListener {
	return &closingListener{Listener: l, conns: make(map[*trackedConn]struct{})}
}

func (l *closingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// Close stops accepting, then closes the connections still open.
func (l *closingListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
	return err
}

func (l *closingListener) forget(c *trackedConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// trackedConn leaves its listener's set when it is closed.
type trackedConn struct {
	net.Conn
	l    *closingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.l.forget(c) })
	return c.Conn.Close()
}
