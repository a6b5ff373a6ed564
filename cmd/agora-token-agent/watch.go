package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"agoratokens/agent/client"
	"agoratokens/agent/socketproto"
)

// runWatch prints the agent's events as they come, one JSON object a
// line (the protocol's own lines), until interrupted: first "watching"
// (so a script knows the watch is live even before any token exists),
// then the current tokens and every event. Losing the agent prints a
// "disconnected" line; the watch reconnects by itself and prints
// "watching" and the current tokens again, unless the agent then refuses
// this user (forbidden): that ends the watch with exit status 1.
func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newAgentCommand("watch", stderr,
		"Usage: agora-token-agent watch [NAME...] [--config FILE | --socket PATH]",
		"Prints watching, then token, will_expire and expired events (of NAMEs, or all) until interrupted.")
	c, names, code := cmd.dial(args, nil)
	if c == nil {
		return code
	}
	defer c.Close()
	events, err := c.Watch(ctx, names...)
	if err != nil {
		return cmd.fail(err)
	}
	enc := json.NewEncoder(stdout)
	var lost error // why the agent connection last broke
	for ev := range events {
		if ev.Kind == client.EventDisconnected {
			lost = ev.Err
		}
		if err := enc.Encode(eventLine(ev)); err != nil {
			return cmd.fail(err)
		}
	}
	if ctx.Err() == nil { // the watch ended by itself: the agent refuses us
		return cmd.fail(lost)
	}
	return 0
}

// eventLine is ev as the protocol line it came from.
func eventLine(ev client.Event) socketproto.Message {
	switch ev.Kind {
	case client.EventDisconnected:
		return socketproto.Message{Event: string(ev.Kind), Message: fmt.Sprint(ev.Err)}
	case client.EventWatching:
		return socketproto.Message{Event: string(ev.Kind), Names: ev.Names}
	}
	t := ev.Token
	m := socketproto.Message{Event: string(ev.Kind), Name: ev.Name, Service: t.Service, Channel: t.Channel,
		User: t.User, UID: t.UID, Role: t.Role, Token: t.Token, KID: t.KID}
	if !t.ExpiresAt.IsZero() {
		m.ExpiresAt = t.ExpiresAt.Unix()
	}
	if ev.Kind != client.EventExpired {
		in := int64(t.ExpiresIn.Seconds())
		m.ExpiresIn = &in
	}
	return m
}
