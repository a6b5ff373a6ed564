package accesstoken

import (
	"fmt"
	"strings"
)

// MaxChannelLen and MaxAccountLen are Agora's limits on channel names and
// user accounts, in bytes.
const (
	MaxChannelLen = 64
	MaxAccountLen = 255
)

// ValidateHex32 checks that v (an app id or certificate) is 32 hex
// characters. The error names what but never quotes v, which may be
// a secret.
func ValidateHex32(what, v string) error {
	if len(v) != 32 {
		return fmt.Errorf("%s must be 32 hex characters, got %d characters", what, len(v))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return fmt.Errorf("%s must be 32 hex characters, character %d is not hex", what, i+1)
		}
	}
	return nil
}

// WildcardChannel in an RTC service of a token means any channel; Agora's
// RTM builder uses it for RTM stream channels.
const WildcardChannel = "*"

// ValidChannelByte reports whether c may appear in an Agora channel name:
// a-z A-Z 0-9, space and !#$%&()+-:;<=.>?@[]^_{|}~,
func ValidChannelByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case ' ', '!', '#', '$', '%', '&', '(', ')', '+', '-', ':', ';', '<', '=',
		'.', '>', '?', '@', '[', ']', '^', '_', '{', '|', '}', '~', ',':
		return true
	}
	return false
}

// ValidateChannel checks a channel name against Agora's rules.
func ValidateChannel(ch string) error {
	if ch == "" {
		return fmt.Errorf("channel name is empty")
	}
	if len(ch) > MaxChannelLen {
		return fmt.Errorf("channel name is %d bytes, max %d", len(ch), MaxChannelLen)
	}
	for i := 0; i < len(ch); i++ {
		if !ValidChannelByte(ch[i]) {
			// The clone keeps ch (and the token holding it) from escaping
			// to the heap on the success path.
			return fmt.Errorf("channel name %q has a character Agora does not allow at byte %d", strings.Clone(ch), i+1)
		}
	}
	return nil
}

// ValidateAccount checks a user account or user id.
func ValidateAccount(what, a string) error {
	if len(a) > MaxAccountLen {
		return fmt.Errorf("%s is %d bytes, max %d", what, len(a), MaxAccountLen)
	}
	return nil
}

// ValidateExpire checks a lifetime in seconds: 1..MaxExpire.
func ValidateExpire(what string, e uint32) error {
	if e < 1 || e > MaxExpire {
		return fmt.Errorf("%s must be 1..%d seconds, got %d", what, MaxExpire, e)
	}
	return nil
}

// Validate checks the fields a build would sign.
func (t *Token) Validate() error {
	if err := ValidateHex32("app id", t.AppID); err != nil {
		return err
	}
	if err := ValidateExpire("token expire", t.Expire); err != nil {
		return err
	}
	if len(t.Services) > 0xffff {
		return fmt.Errorf("token has %d services, max 65535", len(t.Services))
	}
	for i := range t.Services {
		if err := t.Services[i].validate(); err != nil {
			return fmt.Errorf("service %d (%s): %w", i+1, t.Services[i].Type, err)
		}
	}
	return nil
}

func (s *Service) validate() error {
	if !s.Type.Known() {
		return fmt.Errorf("unknown service type %d", uint16(s.Type))
	}
	if len(s.Privileges) > 0xffff {
		return fmt.Errorf("%d privileges, max 65535", len(s.Privileges))
	}
	for i, p := range s.Privileges {
		if p.Expire < 1 || p.Expire > MaxExpire {
			return ValidateExpire(fmt.Sprintf("privilege %s expire", PrivilegeName(s.Type, p.Key)), p.Expire)
		}
		for _, q := range s.Privileges[:i] {
			if q.Key == p.Key {
				return fmt.Errorf("privilege %d given twice", p.Key)
			}
		}
	}
	switch s.Type {
	case ServiceRTC:
		// "*" is the wildcard stream channel of RTM tokens.
		if s.Channel != WildcardChannel {
			if err := ValidateChannel(s.Channel); err != nil {
				return err
			}
		}
		return ValidateAccount("uid or account", s.UID)
	case ServiceStreaming, ServiceFCDN:
		if err := ValidateChannel(s.Channel); err != nil {
			return err
		}
		return ValidateAccount("account", s.Account)
	case ServiceRTM, ServiceChat, ServiceRTM2:
		if err := ValidateAccount("user id", s.UserID); err != nil {
			return err
		}
	case ServiceAPaaS:
		if err := ValidateAccount("room uuid", s.RoomUUID); err != nil {
			return err
		}
		if err := ValidateAccount("user uuid", s.UserUUID); err != nil {
			return err
		}
	}
	if s.Type == ServiceRTM2 {
		if len(s.Permissions) > 0xffff {
			return fmt.Errorf("%d permissions, max 65535", len(s.Permissions))
		}
		for i, p := range s.Permissions {
			for _, q := range s.Permissions[:i] {
				if q.ResourceType == p.ResourceType && q.PermissionType == p.PermissionType {
					return fmt.Errorf("rtm2 permission (resource type %d, permission type %d) given twice", p.ResourceType, p.PermissionType)
				}
			}
			if len(p.Resources) > 0xffff {
				return fmt.Errorf("rtm2 permission (resource type %d, permission type %d) has %d resources, max 65535", p.ResourceType, p.PermissionType, len(p.Resources))
			}
			for _, r := range p.Resources {
				if err := ValidateAccount("resource", r); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
