package issuer

import "fmt"

// Loaded is everything serve reads before it starts: the config, and what
// it names.
type Loaded struct {
	Config *Config
	Policy *Policy
	// Warnings are what serve accepts but an operator should hear about,
	// each naming its key and file.
	Warnings []error
}

// Load reads the config file at path and every file it names, as serve
// does, and fails where serve would: certificates and the broker password
// (with their modes), the broker's TLS files, the embedded broker's device
// credentials, the policy and the API keys. check-config uses it, so that
// "config OK" means serve starts.
func Load(path string) (*Loaded, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	pol, err := LoadPolicy(cfg.PolicyFile, cfg.Limits)
	if err != nil {
		return nil, err
	}
	if _, err := NewSigner(cfg.AppID, cfg.Certs(), cfg.ActiveCertificate, nil); err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	if cfg.HTTP.APIKeysFile != "" {
		if _, err := loadAPIKeys(cfg.HTTP.APIKeysFile); err != nil {
			return nil, err
		}
	}
	return &Loaded{Config: cfg, Policy: pol, Warnings: cfg.Warnings()}, nil
}
