package redact_test

// Every URL validator of the project, given a URL with a password in it,
// says what is wrong without the password. The validators live in the
// packages that read the URLs; this table keeps them all in one place so
// that a new one is added here.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"agoratokens/agent"
	"agoratokens/issuer"
	"agoratokens/issuer/fleetsim"
)

const password = "s3cr3t"

// Bad URLs that each still carry user:s3cr3t@: no port, a bad escape, a
// bad port, a wrong scheme, a space in the host, plain http to a remote
// host.
var badURLs = []string{
	"tcp://user:" + password + "@broker",
	"tcp://user:" + password + "@broker:1883/%zz",
	"tcp://user:" + password + "@broker:port",
	"ws://user:" + password + "@broker:1883",
	"tcp://user:" + password + "@bro ker:1883",
	"http://user:" + password + "@tokens.example.com/x",
	"https://user:" + password + "@issuer/%zz",
	"tcp://user:" + password + "@broker:1883",
}

func TestNoValidatorShowsAPassword(t *testing.T) {
	const issuerBase = "app_id: 970ca35de60c44645bbae8a215061b33\ncertificates: [{id: primary, file: cert}]\npolicy_file: policy.yaml\n"
	validators := []struct {
		name string
		// check returns the error for url; goodToo says the validator
		// may accept a well-formed URL (the agent takes user info).
		check func(url string) error
	}{
		{"agent broker.url", func(u string) error {
			_, err := agent.ParseConfig(strings.NewReader("device_id: d\nbroker: {url: \""+u+"\"}\n"), "/x")
			return err
		}},
		{"agent http.url", func(u string) error {
			_, err := agent.ParseConfig(strings.NewReader("device_id: d\nhttp: {url: \""+u+"\"}\n"), "/x")
			return err
		}},
		{"agent broker.url read from a file", func(u string) error {
			path := filepath.Join(t.TempDir(), "agent.yaml")
			if err := os.WriteFile(path, []byte("device_id: d\nbroker: {url: \""+u+"\", password_file: nope}\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := agent.LoadConfig(path)
			return err
		}},
		{"issuer broker.url", func(u string) error {
			_, err := issuer.ParseConfig(strings.NewReader(issuerBase + "broker: {url: \"" + u + "\"}\n"))
			return err
		}},
		{"fleetsim broker URL", func(u string) error {
			_, err := fleetsim.New(fleetsim.Config{BrokerURL: u, Devices: 1, Seed: []byte("seed")})
			return err
		}},
	}
	for _, v := range validators {
		t.Run(v.name, func(t *testing.T) {
			refused := 0
			for _, u := range badURLs {
				err := v.check(u)
				if err == nil {
					continue
				}
				refused++
				if strings.Contains(err.Error(), password) {
					t.Errorf("%s: error shows the password: %v", u, err)
				}
			}
			if refused < 3 {
				t.Fatalf("only %d of %d bad URLs refused: the table does not reach this validator", refused, len(badURLs))
			}
		})
	}
}
