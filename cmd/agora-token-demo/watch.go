package main

import (
	"context"
	"time"

	"agoratokens/agent/client"
)

// watchAgent follows one agent's socket, as the media client does, to put
// the agent's side on the timeline: each token it hands out (decoded),
// will_expire and expired. It records the tokens so that finish can check
// each reached the media client.
func (d *demo) watchAgent(ctx context.Context, c *camera, sock string) {
	var events <-chan client.Event
	for delay := 50 * time.Millisecond; events == nil; delay = min(delay*2, time.Second) {
		cl, err := client.Dial(sock)
		if err == nil {
			if events, err = cl.Watch(ctx); err != nil {
				cl.Close()
				events = nil
			}
		}
		if events != nil {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	seen := map[string]bool{}  // tokens already shown
	names := map[string]bool{} // token names seen at least once
	for ev := range events {
		who := c.id + " agent"
		switch ev.Kind {
		case client.EventToken:
			if seen[ev.Token.Token] {
				continue // resent after a reconnect
			}
			seen[ev.Token.Token] = true
			c.mu.Lock()
			c.handed = append(c.handed, ev.Token.Token)
			c.mu.Unlock()
			verb := "renewed"
			if !names[ev.Name] {
				verb, names[ev.Name] = "got", true
				c.mu.Lock()
				c.names++
				c.mu.Unlock()
			}
			d.out.device(c.i, who, "%s %s: %s", verb, ev.Name, describe(ev.Token.Token, ev.Token.KID, int64(ev.Token.ExpiresIn.Seconds())))
		case client.EventWillExpire:
			d.out.device(c.i, who, "will_expire %s in %ds: renewing", ev.Name, int64(ev.Token.ExpiresIn.Seconds()))
		case client.EventExpired:
			d.out.device(c.i, who, "EXPIRED %s: no fresh token in time; still trying", ev.Name)
		case client.EventDisconnected:
			d.out.device(c.i, who, "socket closed (%v); reconnecting", ev.Err)
		}
	}
}
