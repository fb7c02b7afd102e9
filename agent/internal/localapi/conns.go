package localapi

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// connGuard is the API's listener. It bounds the connections the agent holds
// open, so a local program cannot use up the agent's file descriptors, and it
// keeps room for the POS: a connection is anonymous until one of its requests
// shows the token, anonymous connections may fill only part of the limit, and
// when room is needed the oldest anonymous one is closed. Connections that
// showed the token are never closed to make room.
type connGuard struct {
	net.Listener
	max      int           // connections open at most
	anonMax  int           // anonymous connections open at most
	anonIdle time.Duration // an anonymous connection idle this long is closed
	log      *slog.Logger

	mu      sync.Mutex
	open    int
	anon    *list.List // of *guardedConn, oldest first
	refused int        // connections refused since the last log line
	logged  time.Time
}

func newConnGuard(ln net.Listener, limit int, anonIdle time.Duration, log *slog.Logger) *connGuard {
	// A quarter of the limit is only for connections with the token: the POS
	// keeps a few keep-alive connections, a stream or two and long-polls.
	reserve := max(limit/4, 1)
	return &connGuard{Listener: ln, max: limit, anonMax: max(limit-reserve, 1), anonIdle: anonIdle, log: log, anon: list.New()}
}

// guardedConn is one accepted connection. Its fields are guarded by g.mu.
type guardedConn struct {
	net.Conn
	g      *connGuard
	elem   *list.Element // in g.anon while anonymous
	closed bool
	active bool // a request is being read or answered
	idle   *time.Timer
	once   sync.Once
	err    error
}

// Accept returns the next connection there is room for. A connection there is
// no room for (every slot held by connections with the token) gets the busy
// answer and is closed at once.
func (g *connGuard) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if gc := g.admit(c); gc != nil {
			return gc, nil
		}
		g.refuse(c)
	}
}

func (g *connGuard) admit(c net.Conn) *guardedConn {
	g.mu.Lock()
	var evict []*guardedConn
	for (g.open >= g.max || g.anon.Len() >= g.anonMax) && g.anon.Len() > 0 {
		old := g.anon.Front().Value.(*guardedConn)
		g.forgetLocked(old)
		evict = append(evict, old)
	}
	var gc *guardedConn
	if g.open < g.max {
		gc = &guardedConn{Conn: c, g: g}
		gc.elem = g.anon.PushBack(gc)
		g.open++
		gc.armIdleLocked()
	}
	g.mu.Unlock()
	for _, old := range evict {
		_ = old.Close()
	}
	return gc
}

// busyAnswer is written on a connection there is no room for; it is in the
// API's error shape so the POS's client shows the reason.
var busyAnswer = func() []byte {
	body := `{"error":{"code":"busy","message":"the agent has too many connections open; retry shortly","retryable":true}}`
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

func (g *connGuard) refuse(c net.Conn) {
	// A fresh socket's send buffer is empty: this write does not wait, and the
	// deadline makes sure of it.
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Write(busyAnswer)
	_ = c.Close()
	g.mu.Lock()
	g.refused++
	// One line per ten seconds at most: a flood must not flood the log too.
	if now := time.Now(); now.Sub(g.logged) >= 10*time.Second {
		g.log.Warn("local API: connections refused, every slot is held by clients with the token",
			"refused", g.refused, "max_connections", g.max)
		g.logged, g.refused = now, 0
	}
	g.mu.Unlock()
}

// authenticated marks c as the POS's: it no longer counts against the
// anonymous share, is never closed to make room, and keeps the normal idle
// timeout.
func (g *connGuard) authenticated(c *guardedConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.elem != nil {
		g.anon.Remove(c.elem)
		c.elem = nil
		c.stopIdleLocked()
	}
}

// forgetLocked drops c from the counts; it is called once per connection.
func (g *connGuard) forgetLocked(c *guardedConn) {
	if c.closed {
		return
	}
	c.closed = true
	g.open--
	if c.elem != nil {
		g.anon.Remove(c.elem)
		c.elem = nil
	}
	c.stopIdleLocked()
}

// state follows http.Server's view of the connection: an anonymous
// connection waiting for a request (new or idle) is closed after anonIdle.
func (g *connGuard) state(c net.Conn, s http.ConnState) {
	gc, ok := c.(*guardedConn)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch s {
	case http.StateActive:
		gc.active = true
		gc.stopIdleLocked()
	case http.StateIdle:
		gc.active = false
		gc.armIdleLocked()
	}
}

func (c *guardedConn) armIdleLocked() {
	if c.elem == nil || c.closed || c.g.anonIdle <= 0 {
		return
	}
	c.stopIdleLocked()
	c.idle = time.AfterFunc(c.g.anonIdle, func() {
		c.g.mu.Lock()
		expired := c.elem != nil && !c.active && !c.closed
		c.g.mu.Unlock()
		if expired {
			_ = c.Close()
		}
	})
}

func (c *guardedConn) stopIdleLocked() {
	if c.idle != nil {
		c.idle.Stop()
		c.idle = nil
	}
}

func (c *guardedConn) Close() error {
	c.once.Do(func() {
		c.g.mu.Lock()
		c.g.forgetLocked(c)
		c.g.mu.Unlock()
		c.err = c.Conn.Close()
	})
	return c.err
}

// CloseWrite lets http.Server half-close the connection as it does with a
// bare TCP connection, so a client gets the whole error answer.
func (c *guardedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

type connKey struct{}

// connContext makes the connection reachable from its requests' contexts.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if gc, ok := c.(*guardedConn); ok {
		return context.WithValue(ctx, connKey{}, gc)
	}
	return ctx
}

func connOf(r *http.Request) *guardedConn {
	gc, _ := r.Context().Value(connKey{}).(*guardedConn)
	return gc
}
