package issuer

import "fmt"

// Loaded is everything serve reads before it starts: the config, and what
// it names.
type Loaded struct {
	Config *Config
	Policy *Policy
	Signer *Signer
	keys   *apiKeys   // nil: no API keys file
	http   *httpState // the HTTP API's CORS, anonymous access and TLS
	// Warnings are what serve accepts but an operator should hear about,
	// each naming its key and file.
	Warnings []error
}

// Load reads the config file at path and every file it names, as serve
// does, and fails where serve would: certificates and the broker password
// (with their modes), the broker's TLS files, the embedded broker's device
// credentials, the policy and the API keys. check-config uses it, so that
// "config OK" means serve starts.
func Load(path string) (*Loaded, error) { return load(path, nil) }

// load is Load with the signer's salt source (nil: crypto/rand).
func load(path string, salt func() (uint32, error)) (*Loaded, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	pol, err := LoadPolicy(cfg.PolicyFile, cfg.Limits)
	if err != nil {
		return nil, err
	}
	sig, err := NewSigner(cfg.AppID, cfg.Certs(), cfg.ActiveCertificate, salt)
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	l := &Loaded{Config: cfg, Policy: pol, Signer: sig, Warnings: cfg.Warnings()}
	if l.http, err = loadHTTPState(cfg); err != nil {
		return nil, err
	}
	if cfg.HTTP.APIKeysFile != "" {
		if l.keys, err = loadAPIKeys(cfg.HTTP.APIKeysFile); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// state is what the service runs on, from what Load read.
func (l *Loaded) state() *state {
	return &state{cfg: l.Config, policy: l.Policy, signer: l.Signer, keys: l.keys, http: l.http}
}
