// Package faultproxy is a TCP proxy for tests that stands between a
// client and a server on 127.0.0.1 and breaks the path on demand: it can
// blackhole the connections (bytes accepted and dropped in both
// directions, the sockets kept open, as a Wi-Fi link that went away
// without a RST looks), delay or throttle what it forwards, reset every
// connection, refuse new ones, and go back to plain forwarding.
//
//	p, err := faultproxy.New(broker.Addr) // the client dials p.Addr()
//	...
//	p.Blackhole() // the link dies; the sockets stay open
//	p.Restore()   // new connections get through; the old stay dead
//	p.Close()     // in t.Cleanup: waits for every goroutine
package faultproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds the proxy's dial to its target.
const dialTimeout = 5 * time.Second

// chunkSize is the largest piece forwarded at once (and so the unit the
// delay and the throttle apply to).
const chunkSize = 32 << 10

// Proxy forwards TCP connections from its own loopback address to a
// target, with faults switched on and off by its methods. All methods are
// safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup

	mu        sync.Mutex
	blackhole bool
	delay     time.Duration
	throttle  int // bytes per second; 0: unlimited
	refuse    bool
	conns     map[*conn]struct{}
	closed    bool
}

// conn is one proxied client connection and its upstream (nil while the
// proxy blackholes: a blackholed connection never reaches the target).
type conn struct {
	client   net.Conn
	upstream net.Conn
	done     chan struct{} // closed when the connection is torn down
	once     sync.Once

	mu   sync.Mutex
	dead bool // blackholed: stays dead after Restore
}

// New listens on 127.0.0.1:0 and forwards every connection to target
// (host:port).
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{target: target, ln: ln, done: make(chan struct{}), conns: map[*conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the host:port clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole makes every current and new connection accept bytes and drop
// them, in both directions, while staying open.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackhole = true
	for c := range p.conns {
		c.setDead()
	}
}

// Delay forwards each chunk d after it was read (0: at once). Each
// direction forwards one chunk at a time, so a stream is slowed too, as
// on a long, narrow link.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Throttle limits each direction of each connection to bytesPerSecond
// (0: unlimited).
func (p *Proxy) Throttle(bytesPerSecond int) {
	p.mu.Lock()
	p.throttle = max(bytesPerSecond, 0)
	p.mu.Unlock()
}

// Reset sends a RST on every current connection, both to the client and
// to the target.
func (p *Proxy) Reset() {
	p.mu.Lock()
	cs := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	for _, c := range cs {
		c.close(true)
	}
}

// Refuse, when on, closes new connections as soon as they are accepted.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// Restore goes back to plain forwarding for new connections and for the
// current ones that are not blackholed. A blackholed connection stays
// dead, as on a real network once a NAT entry timed out.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.blackhole, p.delay, p.throttle, p.refuse = false, 0, 0, false
	p.mu.Unlock()
}

// Conns is how many client connections are open.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every connection and waits until every
// goroutine of the proxy has returned.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	cs := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range cs {
		c.close(false)
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-p.done:
				return
			default:
			}
			// A passing accept error (too many open files): keep serving
			// after a pause rather than spin.
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-t.C:
			case <-p.done:
				t.Stop()
				return
			}
			continue
		}
		p.mu.Lock()
		if p.closed || p.refuse {
			p.mu.Unlock()
			nc.Close()
			continue
		}
		c := &conn{client: nc, done: make(chan struct{}), dead: p.blackhole}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

// serve dials the target (unless the connection is born blackholed) and
// pumps both directions until the client goes away or the connection is
// reset or closed.
func (p *Proxy) serve(c *conn) {
	defer p.wg.Done()
	defer func() {
		c.close(false)
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	var up net.Conn
	if !c.isDead() {
		var err error
		up, err = net.DialTimeout("tcp", p.target, dialTimeout)
		if err != nil {
			return // the client sees its connection closed, as a refused one
		}
		c.mu.Lock()
		c.upstream = up
		c.mu.Unlock()
		select {
		case <-c.done: // reset or closed while dialing
			up.Close()
			return
		default:
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.pump(c, up, c.client)
			// The target went away: the client sees it, unless the
			// connection is blackholed (a dead link hides that too).
			if !c.isDead() {
				c.close(false)
			}
		}()
	}
	p.pump(c, c.client, up)
}

// pump copies src to dst (nil: a connection born blackholed, which has
// no upstream), dropping what it reads while c is dead. It returns when
// src fails or c is torn down.
func (p *Proxy) pump(c *conn, src, dst net.Conn) {
	buf := make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 && dst != nil && !c.isDead() {
			p.mu.Lock()
			delay, rate := p.delay, p.throttle
			p.mu.Unlock()
			if !c.wait(delay) {
				return
			}
			// Blackholed while waiting: the chunk is dropped.
			if !c.isDead() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if rate > 0 && !c.wait(time.Duration(n)*time.Second/time.Duration(rate)) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wait pauses for d, or reports false if the connection is torn down
// first.
func (c *conn) wait(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.done:
		return false
	}
}

func (c *conn) setDead() {
	c.mu.Lock()
	c.dead = true
	c.mu.Unlock()
}

func (c *conn) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// close tears the connection down, with a RST on both sockets when rst.
func (c *conn) close(rst bool) {
	c.once.Do(func() {
		close(c.done)
		c.mu.Lock()
		up := c.upstream
		c.mu.Unlock()
		for _, nc := range []net.Conn{c.client, up} {
			if nc == nil {
				continue
			}
			if tc, ok := nc.(*net.TCPConn); ok && rst {
				_ = tc.SetLinger(0)
			}
			_ = nc.Close()
		}
	})
}
