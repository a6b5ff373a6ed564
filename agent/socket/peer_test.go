package socket

import (
	"maps"
	"testing"
	"time"

	"agoratokens/agent"
	"agoratokens/wire"
)

func TestAuthorize(t *testing.T) {
	tests := []struct {
		name string
		peer Peer
		uids []int
		gids []int
		ok   bool
	}{
		{"root", Peer{UID: 0, GID: 0}, []int{1000, 0}, []int{998}, true},
		{"agent uid", Peer{UID: 1000, GID: 1000}, []int{1000, 0}, []int{998}, true},
		{"socket group primary", Peer{UID: 1001, GID: 998}, []int{1000, 0}, []int{998}, true},
		{"socket group supplementary", Peer{UID: 1001, GID: 1001, Groups: []int{20, 998}}, []int{1000, 0}, []int{998}, true},
		{"stranger", Peer{UID: 1001, GID: 1001, Groups: []int{20}}, []int{1000, 0}, []int{998}, false},
		{"nobody", Peer{UID: 65534, GID: 65534}, []int{1000, 0}, []int{998}, false},
		{"nothing allowed", Peer{UID: 0, GID: 0}, []int{}, []int{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := authorize(tt.peer, tt.uids, tt.gids)
			if (err == nil) != tt.ok {
				t.Fatalf("authorize(%+v) = %v, want ok=%v", tt.peer, err, tt.ok)
			}
		})
	}
}

func TestWantEvent(t *testing.T) {
	at := func(sec int) time.Time { return time.Unix(1763800000+int64(sec), 0) }
	ev := func(kind agent.EventKind, name, token string, sec int) agent.Event {
		return agent.Event{Kind: kind, Name: name,
			Token: agent.Token{Grant: wire.Grant{Name: name, Token: token}, ReceivedAt: at(sec)}}
	}
	v := func(token string, sec int) map[string]held { return map[string]held{"v": {token: token, at: at(sec)}} }
	type state struct {
		watching bool
		names    map[string]bool
		sent     map[string]held
		pending  map[string]held
	}
	tests := []struct {
		name        string
		st          state
		ev          agent.Event
		want        bool
		wantSent    held // sent["v"] afterwards
		wantPending bool
	}{
		{"not watching", state{}, ev(agent.EventToken, "v", "t1", 1), false, held{}, false},
		{"watch all, new token", state{watching: true}, ev(agent.EventToken, "v", "t1", 1), true, held{token: "t1", at: at(1)}, false},
		{"token already sent by the snapshot", state{watching: true, sent: v("t1", 1)}, ev(agent.EventToken, "v", "t1", 1), false, held{token: "t1", at: at(1)}, false},
		{"older token queued before the snapshot", state{watching: true, sent: v("t2", 2)}, ev(agent.EventToken, "v", "t1", 1), false, held{token: "t2", at: at(2)}, false},
		{"other name", state{watching: true, names: map[string]bool{"a": true}}, ev(agent.EventToken, "v", "t1", 1), false, held{}, false},
		{"renew pending, not watching", state{pending: v("t1", 1)}, ev(agent.EventToken, "v", "t2", 2), true, held{}, false},
		{"renew pending, event from before the renew", state{pending: v("t1", 1)}, ev(agent.EventToken, "v", "t1", 1), false, held{}, true},
		{"renew pending, older event", state{pending: v("t1", 1)}, ev(agent.EventToken, "v", "t0", 0), false, held{}, true},
		{"renew pending, watching", state{watching: true, sent: v("t1", 1), pending: v("t1", 1)}, ev(agent.EventToken, "v", "t2", 2), true, held{token: "t2", at: at(2)}, false},
		{"will_expire of the held token", state{watching: true, sent: v("t1", 1)}, ev(agent.EventWillExpire, "v", "t1", 1), true, held{token: "t1", at: at(1)}, false},
		{"will_expire of an older token", state{watching: true, sent: v("t2", 2)}, ev(agent.EventWillExpire, "v", "t1", 1), false, held{token: "t2", at: at(2)}, false},
		{"expired, nothing held yet", state{watching: true}, ev(agent.EventExpired, "v", "t1", 1), true, held{token: "t1", at: at(1), expired: true}, false},
		{"expired of the held token", state{watching: true, sent: v("t1", 1)}, ev(agent.EventExpired, "v", "t1", 1), true, held{token: "t1", at: at(1), expired: true}, false},
		{"expired said already", state{watching: true, sent: map[string]held{"v": {token: "t1", at: at(1), expired: true}}}, ev(agent.EventExpired, "v", "t1", 1), false, held{token: "t1", at: at(1), expired: true}, false},
		{"token after expiry", state{watching: true, sent: map[string]held{"v": {token: "t1", at: at(1), expired: true}}}, ev(agent.EventToken, "v", "t2", 2), true, held{token: "t2", at: at(2)}, false},
		{"expired, not watching", state{pending: v("t1", 1)}, ev(agent.EventExpired, "v", "t1", 1), false, held{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(nil, Peer{}, 1, nil)
			c.watching, c.names = tt.st.watching, tt.st.names
			maps.Copy(c.sent, tt.st.sent)
			maps.Copy(c.pending, tt.st.pending)
			if got := wantEvent(c, tt.ev); got != tt.want {
				t.Errorf("wantEvent = %v, want %v", got, tt.want)
			}
			if c.sent["v"] != tt.wantSent {
				t.Errorf("sent = %+v, want %+v", c.sent["v"], tt.wantSent)
			}
			if _, ok := c.pending["v"]; ok != tt.wantPending {
				t.Errorf("renew pending = %v, want %v", ok, tt.wantPending)
			}
		})
	}
}
