package agent

import (
	"fmt"

	"agoratokens/secretfile"
)

// ReadSecrets reads the broker password file or the HTTP bearer token
// file named in the config. A secret file must not be writable by its
// group or readable by others (0600 or 0640); its content, trailing
// newline dropped, is never logged or shown.
func (c *Config) ReadSecrets() error {
	if c.Broker != nil && c.Broker.PasswordFile != "" && c.Broker.password == nil {
		v, err := secretfile.Read(c.Broker.PasswordFile)
		if err != nil {
			return fmt.Errorf("broker.password_file: %w", err)
		}
		c.Broker.password = &v
	}
	if c.HTTP != nil && c.HTTP.BearerTokenFile != "" && c.HTTP.bearer == nil {
		v, err := secretfile.Read(c.HTTP.BearerTokenFile)
		if err != nil {
			return fmt.Errorf("http.bearer_token_file: %w", err)
		}
		c.HTTP.bearer = &v
	}
	return nil
}
