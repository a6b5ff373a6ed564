package testbroker

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"agoratokens/internal/testlog"
	"agoratokens/issuer/broker"
	"agoratokens/issuer/devices"
)

// MochiOptions configures a test embedded broker.
type MochiOptions struct {
	// Devices are registered before the broker starts; their secrets
	// are in Mochi.Secrets.
	Devices []string
	// TopicRoot defaults to wire.DefaultRoot.
	TopicRoot string
	// ServiceUser and ServicePassword default to "issuer" and a fixed
	// test password.
	ServiceUser, ServicePassword string
	// Logger receives the broker's log; nil writes it to a buffer that
	// is printed if the test fails.
	Logger *slog.Logger
}

// Mochi is the project's embedded broker (issuer/broker) running
// in-process for a test.
type Mochi struct {
	// URL is "tcp://127.0.0.1:PORT"; Addr is "127.0.0.1:PORT".
	URL, Addr string
	// CredentialsFile is the broker's device credentials file.
	CredentialsFile string
	// ServiceUser and ServicePassword are the issuer's login.
	ServiceUser, ServicePassword string
	// TopicRoot is the broker's topic root.
	TopicRoot string

	t      testing.TB
	log    *testlog.Buffer
	logger *slog.Logger

	mu      sync.Mutex
	secrets map[string]string
	broker  *broker.Broker
	cancel  context.CancelFunc
	done    chan error
}

// StartMochi runs the embedded broker on a free loopback port with the
// given devices registered. t.Cleanup stops it.
func StartMochi(t testing.TB, opts MochiOptions) *Mochi {
	t.Helper()
	m := &Mochi{
		CredentialsFile: filepath.Join(t.TempDir(), "devices.yaml"),
		ServiceUser:     opts.ServiceUser,
		ServicePassword: opts.ServicePassword,
		TopicRoot:       opts.TopicRoot,
		t:               t,
		log:             &testlog.Buffer{},
		logger:          opts.Logger,
		secrets:         map[string]string{},
	}
	if m.ServiceUser == "" {
		m.ServiceUser = "issuer"
	}
	if m.ServicePassword == "" {
		m.ServicePassword = "test-service-password-0123456789"
	}
	if m.logger == nil {
		m.logger = m.log.Logger()
	}
	f := devices.New()
	for _, d := range opts.Devices {
		s, err := f.Add(d)
		if err != nil {
			t.Fatalf("register test device: %v", err)
		}
		m.secrets[d] = s
	}
	if err := f.Save(m.CredentialsFile); err != nil {
		t.Fatalf("write test credentials: %v", err)
	}
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("embedded broker log:\n%s", m.Log())
		}
	})
	m.start("127.0.0.1:0")
	return m
}

func (m *Mochi) start(listen string) {
	m.t.Helper()
	b, err := broker.New(broker.Config{
		Listen:          listen,
		CredentialsFile: m.CredentialsFile,
		TopicRoot:       m.TopicRoot,
		ServiceUser:     m.ServiceUser,
		ServicePassword: m.ServicePassword,
		Logger:          m.logger,
	})
	if err != nil {
		m.t.Fatalf("embedded broker: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-done:
		cancel()
		m.t.Fatalf("embedded broker stopped during startup: %v", err)
	case <-time.After(startTimeout):
		cancel()
		m.t.Fatalf("embedded broker not ready within %v", startTimeout)
	}
	m.mu.Lock()
	m.broker, m.cancel, m.done = b, cancel, done
	m.mu.Unlock()
	m.Addr = b.Addr()
	m.URL = "tcp://" + m.Addr
}

// Broker is the running broker (for Reload).
func (m *Mochi) Broker() *broker.Broker {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.broker
}

// Secret is a registered device's secret.
func (m *Mochi) Secret(device string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.secrets[device]
	if !ok {
		m.t.Fatalf("device %q is not registered in the test broker", device)
	}
	return s
}

// Device returns client options logging in as a registered device, with
// the device id as client id.
func (m *Mochi) Device(device string) ClientOptions {
	return ClientOptions{ClientID: device, Username: device, Password: m.Secret(device)}
}

// Service returns client options logging in as the service user.
func (m *Mochi) Service() ClientOptions {
	return ClientOptions{Username: m.ServiceUser, Password: m.ServicePassword}
}

// AddDevice registers a device in the credentials file while the broker
// runs (it picks the file up when the device first logs in) and returns
// its secret.
func (m *Mochi) AddDevice(device string) string {
	m.t.Helper()
	f, err := devices.Load(m.CredentialsFile)
	if err != nil {
		m.t.Fatal(err)
	}
	s, err := f.Add(device)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := f.Save(m.CredentialsFile); err != nil {
		m.t.Fatal(err)
	}
	m.mu.Lock()
	m.secrets[device] = s
	m.mu.Unlock()
	return s
}

// Stop stops the broker and waits until it has closed. Stopping a
// stopped broker does nothing.
func (m *Mochi) Stop() {
	m.mu.Lock()
	cancel, done := m.cancel, m.done
	m.cancel, m.broker = nil, nil
	m.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			m.t.Errorf("embedded broker: %v", err)
		}
	case <-time.After(startTimeout):
		m.t.Errorf("embedded broker did not stop within %v", startTimeout)
	}
}

// Restart stops the broker and starts a fresh one on the same port with
// the same credentials (retained messages are lost, as after a crash).
func (m *Mochi) Restart() {
	m.t.Helper()
	m.Stop()
	_, port, _ := net.SplitHostPort(m.Addr)
	if _, err := strconv.Atoi(port); err != nil {
		m.t.Fatalf("restart: bad address %q", m.Addr)
	}
	addr := m.Addr
	if err := waitFree(addr, startTimeout); err != nil {
		m.t.Fatal(err)
	}
	m.start(addr)
}

// waitFree retries binding addr until the old listener has let go of it.
func waitFree(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait) // a retry backoff, not a wait for a condition
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// Log returns what the broker logged (empty when a Logger was given).
func (m *Mochi) Log() string { return m.log.String() }
