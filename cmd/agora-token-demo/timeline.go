package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"agoratokens/accesstoken"
)

// timeline prints what happens, one line per event, prefixed with the
// time since the demo started and coloured per device.
type timeline struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
	start time.Time
}

func newTimeline(w io.Writer, color bool) *timeline {
	return &timeline{w: w, color: color, start: time.Now()}
}

var deviceColors = []string{"\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[32m", "\x1b[34m", "\x1b[31m"}

const (
	bold  = "\x1b[1m"
	reset = "\x1b[0m"
)

// system prints a line about the demo itself (setup, broker restart,
// rotation).
func (t *timeline) system(format string, args ...any) {
	t.line("", -1, fmt.Sprintf(format, args...))
}

// device prints a line about device number i.
func (t *timeline) device(i int, who, format string, args ...any) {
	t.line(who, i, fmt.Sprintf(format, args...))
}

func (t *timeline) line(who string, i int, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	el := time.Since(t.start).Truncate(100 * time.Millisecond)
	prefix := fmt.Sprintf("[%6.1fs] ", el.Seconds())
	switch {
	case i < 0:
		if t.color {
			msg = bold + msg + reset
		}
		fmt.Fprintf(t.w, "%s%s\n", prefix, msg)
	default:
		tag := fmt.Sprintf("%-14s", who)
		if t.color {
			tag = deviceColors[i%len(deviceColors)] + tag + reset
		}
		fmt.Fprintf(t.w, "%s%s %s\n", prefix, tag, msg)
	}
}

// describe decodes a token for the timeline: what it admits to, as whom,
// signed by which certificate and for how long.
func describe(token, kid string, expiresIn int64) string {
	t, err := accesstoken.Parse(token)
	if err != nil {
		return fmt.Sprintf("UNDECODABLE TOKEN: %v", err)
	}
	var parts []string
	for _, s := range t.Services {
		switch s.Type {
		case accesstoken.ServiceRTC:
			role := "subscriber"
			if _, ok := s.Privilege(accesstoken.PrivPublishVideoStream); ok {
				role = "publisher"
			}
			uid := s.UID
			if uid == "" {
				uid = "0"
			}
			parts = append(parts, fmt.Sprintf("rtc channel=%s uid=%s role=%s", s.Channel, uid, role))
		case accesstoken.ServiceRTM:
			parts = append(parts, fmt.Sprintf("rtm user=%s", s.UserID))
		default:
			parts = append(parts, s.Type.String())
		}
	}
	return fmt.Sprintf("%s kid=%s expires in %ds (%s…)", strings.Join(parts, " + "), kid, expiresIn, short(token))
}

// short is a token's recognisable head, enough to tell tokens apart.
func short(token string) string {
	if len(token) > 20 {
		return token[:20]
	}
	return token
}
