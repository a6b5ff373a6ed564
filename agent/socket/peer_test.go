package socket

import (
	"testing"

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
	ev := func(kind agent.EventKind, name, token string) agent.Event {
		return agent.Event{Kind: kind, Name: name, Token: agent.Token{Grant: wire.Grant{Name: name, Token: token}}}
	}
	type state struct {
		watching bool
		names    map[string]bool
		sent     map[string]string
		pending  []string
	}
	tests := []struct {
		name     string
		st       state
		ev       agent.Event
		want     bool
		wantSent string // sent[name] afterwards
	}{
		{"not watching", state{}, ev(agent.EventToken, "v", "t1"), false, ""},
		{"watch all, new token", state{watching: true}, ev(agent.EventToken, "v", "t1"), true, "t1"},
		{"token already sent by the snapshot", state{watching: true, sent: map[string]string{"v": "t1"}}, ev(agent.EventToken, "v", "t1"), false, "t1"},
		{"other name", state{watching: true, names: map[string]bool{"a": true}}, ev(agent.EventToken, "v", "t1"), false, ""},
		{"renew pending, not watching", state{pending: []string{"v"}}, ev(agent.EventToken, "v", "t2"), true, ""},
		{"renew pending for another name", state{pending: []string{"a"}}, ev(agent.EventToken, "v", "t2"), false, ""},
		{"will_expire of the held token", state{watching: true, sent: map[string]string{"v": "t1"}}, ev(agent.EventWillExpire, "v", "t1"), true, "t1"},
		{"will_expire of an older token", state{watching: true, sent: map[string]string{"v": "t2"}}, ev(agent.EventWillExpire, "v", "t1"), false, "t2"},
		{"expired, nothing held yet", state{watching: true}, ev(agent.EventExpired, "v", "t1"), true, "expired:t1"},
		{"expired of the held token", state{watching: true, sent: map[string]string{"v": "t1"}}, ev(agent.EventExpired, "v", "t1"), true, "expired:t1"},
		{"expired said already", state{watching: true, sent: map[string]string{"v": "expired:t1"}}, ev(agent.EventExpired, "v", "t1"), false, "expired:t1"},
		{"token after expiry", state{watching: true, sent: map[string]string{"v": "expired:t1"}}, ev(agent.EventToken, "v", "t2"), true, "t2"},
		{"expired, not watching", state{pending: []string{"v"}}, ev(agent.EventExpired, "v", "t1"), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(nil, Peer{}, 1, nil)
			c.watching, c.names = tt.st.watching, tt.st.names
			for k, v := range tt.st.sent {
				c.sent[k] = v
			}
			for _, n := range tt.st.pending {
				c.pending[n] = struct{}{}
			}
			if got := wantEvent(c, tt.ev); got != tt.want {
				t.Errorf("wantEvent = %v, want %v", got, tt.want)
			}
			if c.sent[tt.ev.Name] != tt.wantSent {
				t.Errorf("sent[%s] = %q, want %q", tt.ev.Name, c.sent[tt.ev.Name], tt.wantSent)
			}
			if _, ok := c.pending[tt.ev.Name]; ok && tt.ev.Kind == agent.EventToken {
				t.Error("renew still pending after a token event")
			}
		})
	}
}
