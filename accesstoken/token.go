// Package accesstoken builds, parses and verifies Agora AccessToken2
// ("007") tokens.
//
// The package is pure: it does no I/O and holds no global state besides
// buffer pools. Parsing is hardened for hostile input: it never panics,
// says what is wrong with a malformed token, and reads at most MaxPayload
// bytes of payload into pooled buffers, so what it allocates is bounded
// whatever the input (under 1 MiB for the worst shapes, a few hundred
// bytes for a real token). The JSON form of a Token is the token CLI's
// schema (see json.go).
package accesstoken

import (
	"cmp"
	"fmt"
	"slices"
)

// Version is the version prefix of every AccessToken2 token.
const Version = "007"

// MaxExpire is the longest lifetime, in seconds, Agora accepts for a token
// or a privilege (24 h).
const MaxExpire = 86400

// ServiceType identifies a service carried in a token.
type ServiceType uint16

// Service types, as numbered by Agora.
const (
	ServiceRTC       ServiceType = 1
	ServiceRTM       ServiceType = 2
	ServiceStreaming ServiceType = 3
	ServiceFPA       ServiceType = 4
	ServiceChat      ServiceType = 5
	ServiceFCDN      ServiceType = 6
	ServiceAPaaS     ServiceType = 7
	ServiceRTM2      ServiceType = 8
	ServiceConvoAI   ServiceType = 9
	ServiceSTT       ServiceType = 10
)

// Privileges of the RTC service.
const (
	PrivJoinChannel        uint16 = 1
	PrivPublishAudioStream uint16 = 2
	PrivPublishVideoStream uint16 = 3
	PrivPublishDataStream  uint16 = 4
)

// Login privilege of the RTM, RTM2 and FPA services.
const PrivLogin uint16 = 1

// Privileges of the Chat service.
const (
	PrivChatUser uint16 = 1
	PrivChatApp  uint16 = 2
)

// Privileges of the APaaS (Flexible Classroom / Education) service.
const (
	PrivAPaaSRoomUser uint16 = 1
	PrivAPaaSUser     uint16 = 2
	PrivAPaaSApp      uint16 = 3
)

// Privileges of the Streaming service.
const (
	PrivPublishMixStream uint16 = 1
	PrivPublishRawStream uint16 = 2
)

// Privileges of the FCDN service.
const (
	PrivFCDNPublish uint16 = 1
	PrivFCDNPlay    uint16 = 2
)

// Privilege is one entry of a service's privilege map: a privilege key and
// its lifetime in seconds after the token's issue_ts.
type Privilege struct {
	Key    uint16
	Expire uint32
}

// RTM2Permission is one resource permission of an RTM2 service.
type RTM2Permission struct {
	ResourceType   uint16
	PermissionType uint16
	Resources      []string
}

// Service is one service of a token. Which fields are meaningful depends
// on Type:
//
//	RTC:               Channel, UID ("" for uid 0)
//	RTM, Chat:         UserID
//	Streaming, FCDN:   Channel, Account
//	APaaS:             RoomUUID, UserUUID, Role
//	RTM2:              UserID, Permissions
//	FPA, ConvoAI, STT: privileges only
type Service struct {
	Type        ServiceType
	Privileges  []Privilege // packed sorted by key; Parse returns them sorted
	Channel     string
	UID         string
	Account     string
	UserID      string
	RoomUUID    string
	UserUUID    string
	Role        int16
	Permissions []RTM2Permission
}

// Privilege returns the lifetime of privilege key and whether the service
// carries it.
func (s *Service) Privilege(key uint16) (uint32, bool) {
	for _, p := range s.Privileges {
		if p.Key == key {
			return p.Expire, true
		}
	}
	return 0, false
}

// AddPrivilege sets privilege key to expire, replacing an earlier value.
func (s *Service) AddPrivilege(key uint16, expire uint32) {
	for i := range s.Privileges {
		if s.Privileges[i].Key == key {
			s.Privileges[i].Expire = expire
			return
		}
	}
	s.Privileges = append(s.Privileges, Privilege{Key: key, Expire: expire})
}

// Token is a decoded (or to-be-built) AccessToken2.
type Token struct {
	AppID    string
	IssueTs  uint32 // Unix seconds, issuer clock
	Expire   uint32 // seconds after IssueTs
	Salt     uint32
	Services []Service

	// Signature is the HMAC-SHA256 signature, set by Parse.
	Signature []byte
	// signed is the content the signature covers, set by Parse, so that a
	// token carrying services this package does not know still verifies.
	signed []byte
}

// Service returns the first service of type st, or nil.
func (t *Token) Service(st ServiceType) *Service {
	for i := range t.Services {
		if t.Services[i].Type == st {
			return &t.Services[i]
		}
	}
	return nil
}

// ExpiresAt tells when the token stops working for a use: issue_ts plus
// the smaller of the token's expiry and the expiry of each privilege the
// use needs from service st. It returns an error when the token lacks the
// service or one of the privileges.
func (t *Token) ExpiresAt(st ServiceType, needs ...uint16) (uint32, error) {
	s := t.Service(st)
	if s == nil {
		return 0, fmt.Errorf("token has no %s service", st)
	}
	lifetime := t.Expire
	for _, k := range needs {
		e, ok := s.Privilege(k)
		if !ok {
			return 0, fmt.Errorf("%s service lacks privilege %d", st, k)
		}
		if e < lifetime {
			lifetime = e
		}
	}
	return t.IssueTs + lifetime, nil
}

var serviceNames = map[ServiceType]string{
	ServiceRTC: "rtc", ServiceRTM: "rtm", ServiceStreaming: "streaming",
	ServiceFPA: "fpa", ServiceChat: "chat", ServiceFCDN: "fcdn",
	ServiceAPaaS: "apaas", ServiceRTM2: "rtm2", ServiceConvoAI: "convoai",
	ServiceSTT: "stt",
}

// String returns the service's lower-case name (rtc, rtm, …) or
// "service(N)" for a type this package does not know.
func (st ServiceType) String() string {
	if n, ok := serviceNames[st]; ok {
		return n
	}
	return fmt.Sprintf("service(%d)", uint16(st))
}

// Known reports whether this package knows how to pack service type st.
func (st ServiceType) Known() bool {
	_, ok := serviceNames[st]
	return ok
}

// ParseServiceType maps a name (rtc, rtm, …) to its type.
func ParseServiceType(name string) (ServiceType, bool) {
	for st, n := range serviceNames {
		if n == name {
			return st, true
		}
	}
	return 0, false
}

// sortPrivileges sorts by key without allocating (sort.Slice would).
func sortPrivileges(p []Privilege) {
	slices.SortFunc(p, func(a, b Privilege) int { return cmp.Compare(a.Key, b.Key) })
}
