package broker

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"agoratokens/clock"
	"agoratokens/internal/logthrottle"
	"agoratokens/issuer/devices"
	"agoratokens/wire"
)

// notAuthorized is the reason a removed device is disconnected with.
var notAuthorized = packets.ErrNotAuthorized

// authConfig is what the auth hook decides with.
type authConfig struct {
	topics          wire.Topics
	credentialsFile string
	serviceUser     string
	serviceHash     [sha256.Size]byte
	log             *slog.Logger
	clock           clock.Clock
}

// authHook logs clients in and checks every publish and subscription
// against the ACL.
type authHook struct {
	mqtt.HookBase
	cfg   authConfig
	creds atomic.Pointer[devices.File]

	reloadMu sync.Mutex
	loaded   loadedFile // the file behind creds

	refusals *logthrottle.Logger // a client can trigger each refusal
}

func newAuthHook(cfg authConfig) (*authHook, error) {
	h := &authHook{cfg: cfg, refusals: logthrottle.New(cfg.log, cfg.clock, 0, 0)}
	if _, err := h.reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// ID names the hook for mochi.
func (h *authHook) ID() string { return "agora-device-auth" }

// Provides tells mochi which events the hook handles.
func (h *authHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// OnConnectAuthenticate checks a client's login: the service user, or a
// registered device with its secret, a client id of its own and a last
// will only on its own status topic.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	reason := h.refuseConnect(user, pk.Connect)
	if reason == "" {
		return true
	}
	h.refused("connect refused", "user", safeUser(user), "client", safeUser(pk.Connect.ClientIdentifier),
		"remote", cl.Net.Remote, "reason", reason)
	return false
}

// refuseConnect returns why a login is refused, or "".
func (h *authHook) refuseConnect(user string, c packets.ConnectParams) string {
	switch {
	case user == "":
		return "no user name"
	case user == h.cfg.serviceUser:
		if !checkService(h.cfg.serviceHash, c.Password) {
			return "wrong service password"
		}
		return ""
	case wire.ValidateDeviceID(user) != nil:
		return "user name is not a device id"
	}
	creds := h.creds.Load()
	if !creds.Check(user, string(c.Password)) {
		// A device added or rotated since the file was read: look again
		// (a stat, unless the file changed).
		h.reloadIfChanged()
		creds = h.creds.Load()
	}
	if !creds.Check(user, string(c.Password)) {
		if !creds.Has(user) {
			return "unknown device"
		}
		return "wrong device secret"
	}
	if !deviceClientID(user, c.ClientIdentifier) {
		return fmt.Sprintf("client id must be the device id (or %q + suffix, or empty)", user+":")
	}
	if c.WillFlag && !allowed(h.cfg.topics, h.cfg.serviceUser, user, c.WillTopic, true) {
		return "last will topic " + c.WillTopic + " is not the device's own"
	}
	return ""
}

// deviceClientID reports whether a device may use a client id. Were any
// id allowed, one device could take over another's session.
func deviceClientID(device, id string) bool {
	return id == "" || id == device || strings.HasPrefix(id, device+":")
}

// OnACLCheck checks a publish (write) or a subscription filter or
// delivery (read) against the ACL.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	ok := allowed(h.cfg.topics, h.cfg.serviceUser, user, topic, write)
	if ok && user != h.cfg.serviceUser && !h.creds.Load().Has(user) {
		ok = false // removed since it logged in
	}
	if !ok {
		op := "subscribe"
		if write {
			op = "publish"
		}
		h.refused("operation refused", "user", safeUser(user), "client", cl.ID, "op", op, "topic", topic)
	}
	return ok
}

// allowed is the ACL. The service user may publish to any topic under
// the root and subscribe to any filter under it, directly or through a
// shared subscription. A device may publish only to its own req and
// status topics and subscribe only to its own token topic.
func allowed(t wire.Topics, service, user, topic string, write bool) bool {
	if user == "" {
		return false
	}
	if user == service {
		if !write {
			topic = stripShare(topic)
		}
		return strings.HasPrefix(topic, t.Root+"/")
	}
	if write {
		return topic == t.Req(user) || topic == t.Status(user)
	}
	return topic == t.Token(user)
}

// stripShare removes a "$share/{group}/" prefix from a filter.
func stripShare(filter string) string {
	rest, ok := strings.CutPrefix(filter, "$share/")
	if !ok {
		return filter
	}
	_, f, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return f
}

// safeUser shortens a name from the network (user name, client id) for
// a log line. The log handler quotes it where needed (slog's text
// handler quotes a value with spaces or control characters, the JSON
// handler escapes), so quoting it here would quote it twice.
func safeUser(u string) string {
	const max = 80
	if len(u) <= max {
		return u
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(u[cut]) {
		cut--
	}
	return u[:cut] + "…"
}

// refused logs a refusal at warn level, throttled per message.
func (h *authHook) refused(msg string, args ...any) {
	h.refusals.Warn(msg, args...)
}
