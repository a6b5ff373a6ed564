// Package sockettest runs the agent's socket server over a fake token
// source, for tests of the server and of its clients (Go, C, shell).
package sockettest

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"agoratokens/agent"
	"agoratokens/agent/socket"
	"agoratokens/clock"
	"agoratokens/wire"
)

// Source is an agent.Source whose tokens the test sets by hand. Like the
// engine it never blocks on a subscriber: one whose buffer is full is
// closed (and counted in Dropped).
type Source struct {
	mu      sync.Mutex
	device  string
	broker  string
	order   []string
	tokens  map[string]entry
	subs    map[chan agent.Event]struct{}
	dropped int
	// RenewErr, when set, is what Renew returns for a known name.
	renewErr error
	renews   chan string
	clk      clock.Clock
	// onSubscribe runs in Subscribe before the new subscription is
	// registered (SetSubscribeHook).
	onSubscribe func()
}

type entry struct {
	tok   agent.Token
	state agent.TokenState // valid, renewing or missing; expiry is computed
}

// SubscriberBuffer is the event buffer of each subscription.
const SubscriberBuffer = 4096

// NewSource returns a source for device on clk (nil: the real clock),
// which stamps its events and issues its tokens.
func NewSource(device string, clk clock.Clock) *Source {
	if clk == nil {
		clk = clock.Real()
	}
	return &Source{device: device, broker: "connected", tokens: map[string]entry{},
		subs: map[chan agent.Event]struct{}{}, renews: make(chan string, 64), clk: clk}
}

// Token builds a token as the engine would hold it: issued now on clk's
// wall clock (standing in for the issuer's), valid for lifetime, received
// now on clk's monotonic clock.
func Token(name, token string, lifetime time.Duration, clk clock.Clock) agent.Token {
	issued := clk.Wall().Unix()
	return agent.Token{
		Grant: wire.Grant{Name: name, Service: "rtc", Channel: "cam-42", UID: "2882341273",
			Role: "publisher", Token: token, IssuedAt: issued,
			ExpiresAt: issued + int64(lifetime/time.Second), TTL: int64(lifetime / time.Second), KID: "primary"},
		ReceivedAt: clk.Now(),
	}
}

// Issue makes token, issued now and valid for lifetime, the current one
// for name, as if it had just arrived from the issuer.
func (s *Source) Issue(name, token string, lifetime time.Duration) {
	s.Set(Token(name, token, lifetime, s.clk))
}

// Want makes the source keep name without a token yet (state missing).
func (s *Source) Want(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keep(name)
	s.tokens[name] = entry{state: agent.StateMissing}
}

func (s *Source) keep(name string) {
	if _, ok := s.tokens[name]; !ok {
		s.order = append(s.order, name)
	}
}

// Set makes t the current token for its name and emits a token event.
func (s *Source) Set(t agent.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keep(t.Name)
	s.tokens[t.Name] = entry{tok: t, state: agent.StateValid}
	s.emit(agent.Event{Kind: agent.EventToken, Name: t.Name, Token: t, At: s.clk.Now()})
}

// Emit emits a will_expire or expired event about name's current token.
func (s *Source) Emit(kind agent.EventKind, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.tokens[name]
	if kind == agent.EventWillExpire {
		e.state = agent.StateRenewing
		s.tokens[name] = e
	}
	s.emit(agent.Event{Kind: kind, Name: name, Token: e.tok, At: s.clk.Now()})
}

func (s *Source) emit(ev agent.Event) {
	for ch := range s.subs {
		select {
		case ch <- ev:
		default:
			delete(s.subs, ch)
			close(ch)
			s.dropped++
		}
	}
}

// DropSubscribers closes every subscription, as the engine does to a
// subscriber that fell behind.
func (s *Source) DropSubscribers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		delete(s.subs, ch)
		close(ch)
		s.dropped++
	}
}

// SetBroker sets the broker state reported by Status.
func (s *Source) SetBroker(state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broker = state
}

// SetRenewError makes Renew fail with err for known names.
func (s *Source) SetRenewError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renewErr = err
}

// Renews receives the name of each successful Renew call.
func (s *Source) Renews() <-chan string { return s.renews }

// Dropped is how many subscribers were closed for being too slow.
func (s *Source) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Status implements agent.Source.
func (s *Source) Status(now time.Time) agent.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := agent.Status{Device: s.device, Broker: s.broker}
	for _, name := range s.order {
		e := s.tokens[name]
		state := e.state
		if state != agent.StateMissing && !e.tok.Valid(now) {
			state = agent.StateExpired
		}
		st.Tokens = append(st.Tokens, agent.TokenStatus{Name: name, State: state, Token: e.tok})
	}
	return st
}

// Current implements agent.Source.
func (s *Source) Current(name string, now time.Time) (agent.Token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.tokens[name]
	if !ok || e.state == agent.StateMissing || !e.tok.Valid(now) {
		return agent.Token{}, false
	}
	return e.tok, true
}

// SetSubscribeHook makes each later Subscribe call f first, before the
// new subscription is registered (nil: nothing), so that a test can emit
// an event at exactly that point. f may call the Source's methods.
func (s *Source) SetSubscribeHook(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onSubscribe = f
}

// Subscribe implements agent.Source.
func (s *Source) Subscribe() (<-chan agent.Event, func()) {
	s.mu.Lock()
	hook := s.onSubscribe
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan agent.Event, SubscriberBuffer)
	s.subs[ch] = struct{}{}
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.subs[ch]; ok {
			delete(s.subs, ch)
			close(ch)
		}
	}
}

// Renew implements agent.Source.
func (s *Source) Renew(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tokens[name]; !ok {
		return agent.ErrUnknownToken
	}
	if s.renewErr != nil {
		return s.renewErr
	}
	select {
	case s.renews <- name:
	default:
		return errors.New("sockettest: renew calls not read by the test")
	}
	return nil
}

// Serve runs a socket server for src until the test ends. cfg.Path
// defaults to agent.sock in a fresh temporary directory, cfg.Logger to
// discarding. It returns once
// the socket accepts connections; stop shuts the server down and returns
// Run's error.
func Serve(t testing.TB, cfg socket.Config, src agent.Source) (srv *socket.Server, stop func() error) {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "agent.sock")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := socket.New(cfg, src)
	if err != nil {
		t.Fatalf("socket.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("socket server did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("socket server not ready after 10s")
	}
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("socket server did not stop within 10s")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("socket server: %v", err)
		}
	})
	return srv, stop
}

// T0 is where a Fixture's wall clock starts.
var T0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// Fixture is a socket server over a Source for device cam-42, on a fake
// clock whose wall clock starts at T0 and which moves only when the test
// says.
type Fixture struct {
	Clock *clock.Fake
	Src   *Source
	Srv   *socket.Server
	// Stop shuts the server down and returns Run's error (see Serve).
	Stop func() error
}

// NewFixture serves cfg, its Clock replaced by the fixture's, until the
// test ends.
func NewFixture(t testing.TB, cfg socket.Config) *Fixture {
	t.Helper()
	f := &Fixture{Clock: clock.NewFake(T0)}
	f.Src = NewSource("cam-42", f.Clock)
	cfg.Clock = f.Clock
	f.Srv, f.Stop = Serve(t, cfg, f.Src)
	return f
}

// Set makes token the current one for name, valid for an hour from the
// clock's now.
func (f *Fixture) Set(name, token string) {
	f.Src.Issue(name, token, time.Hour)
}
