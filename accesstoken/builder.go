package accesstoken

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// Role is an RTC role, as in Agora's RtcTokenBuilder2.
type Role int

// RTC roles. A publisher may join and publish audio, video and data; a
// subscriber may only join.
const (
	RolePublisher  Role = 1
	RoleSubscriber Role = 2
)

// String returns "publisher" or "subscriber".
func (r Role) String() string {
	switch r {
	case RolePublisher:
		return "publisher"
	case RoleSubscriber:
		return "subscriber"
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// ParseRole maps "publisher" or "subscriber" to a Role.
func ParseRole(s string) (Role, error) {
	switch s {
	case "publisher":
		return RolePublisher, nil
	case "subscriber":
		return RoleSubscriber, nil
	}
	return 0, fmt.Errorf("role %q is not publisher or subscriber", s)
}

// Builder signs tokens for one Agora project. Its methods mirror Agora's
// high-level token builders. The zero Now and Salt use the wall clock and
// crypto/rand; tests inject fixed ones.
type Builder struct {
	AppID       string
	Certificate string
	// Now gives issue_ts; nil means time.Now.
	Now func() time.Time
	// Salt gives the salt; nil means RandomSalt.
	Salt func() (uint32, error)
}

// Sign fills the token's AppID, IssueTs and Salt from the builder where
// they are zero, then signs it.
func (b *Builder) Sign(t *Token) (string, error) {
	if t.AppID == "" {
		t.AppID = b.AppID
	}
	if t.IssueTs == 0 {
		now := time.Now
		if b.Now != nil {
			now = b.Now
		}
		t.IssueTs = uint32(now().Unix())
	}
	if t.Salt == 0 {
		salt := RandomSalt
		if b.Salt != nil {
			salt = b.Salt
		}
		s, err := salt()
		if err != nil {
			return "", err
		}
		t.Salt = s
	}
	return t.Build(b.Certificate)
}

// UIDString is how Agora packs a numeric uid: decimal, and "" for 0.
func UIDString(uid uint32) string {
	if uid == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// rtcService makes the RTC service of a role. Its privileges go into
// privs, which the caller keeps on its stack: with the Token not escaping
// either, building a token allocates little more than its string.
func rtcService(privs *[4]Privilege, channel, account string, role Role, privilegeExpire uint32) (Service, error) {
	if role != RolePublisher && role != RoleSubscriber {
		return Service{}, fmt.Errorf("role %d is not publisher or subscriber", role)
	}
	n := 1
	privs[0] = Privilege{PrivJoinChannel, privilegeExpire}
	if role == RolePublisher {
		privs[1] = Privilege{PrivPublishAudioStream, privilegeExpire}
		privs[2] = Privilege{PrivPublishVideoStream, privilegeExpire}
		privs[3] = Privilege{PrivPublishDataStream, privilegeExpire}
		n = 4
	}
	return Service{Type: ServiceRTC, Channel: channel, UID: account, Privileges: privs[:n]}, nil
}

// RTCWithUID builds an RTC token for a numeric uid (0: any uid).
func (b *Builder) RTCWithUID(channel string, uid uint32, role Role, tokenExpire, privilegeExpire uint32) (string, error) {
	var digits [10]byte
	account := ""
	if uid != 0 {
		account = string(strconv.AppendUint(digits[:0], uint64(uid), 10))
	}
	return b.RTCWithAccount(channel, account, role, tokenExpire, privilegeExpire)
}

// RTCWithAccount builds an RTC token for a user account.
func (b *Builder) RTCWithAccount(channel, account string, role Role, tokenExpire, privilegeExpire uint32) (string, error) {
	var privs [4]Privilege
	s, err := rtcService(&privs, channel, account, role, privilegeExpire)
	if err != nil {
		return "", err
	}
	return b.Sign(&Token{Expire: tokenExpire, Services: []Service{s}})
}

// RTCPrivileges gives each RTC privilege its own lifetime, in seconds.
type RTCPrivileges struct {
	Join, PublishAudio, PublishVideo, PublishData uint32
	// Token is the lifetime of the token itself; zero means Join's.
	Token uint32
}

// RTCWithPrivileges builds an RTC token with per-privilege expiry for a
// uid or account string ("" for uid 0), as Agora's
// BuildTokenWithUserAccountAndPrivilege. A zero publish lifetime leaves
// that privilege out (Agora's builder would pack it as 0).
func (b *Builder) RTCWithPrivileges(channel, account string, p RTCPrivileges) (string, error) {
	var privs [4]Privilege
	s := Service{Type: ServiceRTC, Channel: channel, UID: account, Privileges: privs[:0]}
	s.Privileges = append(s.Privileges, Privilege{PrivJoinChannel, p.Join})
	for _, kv := range [...]Privilege{
		{PrivPublishAudioStream, p.PublishAudio},
		{PrivPublishVideoStream, p.PublishVideo},
		{PrivPublishDataStream, p.PublishData},
	} {
		if kv.Expire != 0 {
			s.Privileges = append(s.Privileges, kv)
		}
	}
	expire := p.Token
	if expire == 0 {
		expire = p.Join
	}
	return b.Sign(&Token{Expire: expire, Services: []Service{s}})
}

// RTCAndRTM builds one token good for RTC (channel, account) and RTM
// login as the same account, as Agora's BuildTokenWithRtm.
func (b *Builder) RTCAndRTM(channel, account string, role Role, tokenExpire, privilegeExpire uint32) (string, error) {
	var privs [4]Privilege
	s, err := rtcService(&privs, channel, account, role, privilegeExpire)
	if err != nil {
		return "", err
	}
	rtm := Service{Type: ServiceRTM, UserID: account, Privileges: []Privilege{{PrivLogin, tokenExpire}}}
	return b.Sign(&Token{Expire: tokenExpire, Services: []Service{s, rtm}})
}

// RTM builds an RTM login token for userID. A non-empty streamChannel
// (or "*" for any) adds RTC join and publish-data privileges on that
// stream channel for userID, as go-tokenbuilder's RTM builder does for
// RTM stream channels.
func (b *Builder) RTM(userID, streamChannel string, expire uint32) (string, error) {
	if userID == "" {
		return "", fmt.Errorf("rtm user id is empty")
	}
	// Slices of arrays on the stack, as in rtcService, filled without
	// append (which would move them to the heap): the token allocates
	// only its string.
	var svcs [2]Service
	privs := [3]Privilege{{PrivLogin, expire}, {PrivJoinChannel, expire}, {PrivPublishDataStream, expire}}
	n := 0
	if streamChannel != "" {
		svcs[n] = Service{Type: ServiceRTC, Channel: streamChannel, UID: userID, Privileges: privs[1:3]}
		n++
	}
	svcs[n] = Service{Type: ServiceRTM, UserID: userID, Privileges: privs[0:1]}
	return b.Sign(&Token{Expire: expire, Services: svcs[:n+1]})
}

// ChatUser builds a Chat user token.
func (b *Builder) ChatUser(userID string, expire uint32) (string, error) {
	if userID == "" {
		return "", fmt.Errorf("chat user id is empty")
	}
	s := Service{Type: ServiceChat, UserID: userID, Privileges: []Privilege{{PrivChatUser, expire}}}
	return b.Sign(&Token{Expire: expire, Services: []Service{s}})
}

// ChatApp builds a Chat app token.
func (b *Builder) ChatApp(expire uint32) (string, error) {
	s := Service{Type: ServiceChat, Privileges: []Privilege{{PrivChatApp, expire}}}
	return b.Sign(&Token{Expire: expire, Services: []Service{s}})
}

// FPA builds an FPA login token.
func (b *Builder) FPA(expire uint32) (string, error) {
	s := Service{Type: ServiceFPA, Privileges: []Privilege{{PrivLogin, expire}}}
	return b.Sign(&Token{Expire: expire, Services: []Service{s}})
}

// EducationRoomUser builds a Flexible Classroom (APaaS) room-user token:
// the APaaS room-user privilege, RTM login as userUUID and a Chat user
// whose id is the hex MD5 of userUUID, as Agora's EducationTokenBuilder2.
func (b *Builder) EducationRoomUser(roomUUID, userUUID string, role int16, expire uint32) (string, error) {
	if roomUUID == "" || userUUID == "" {
		return "", fmt.Errorf("education room uuid and user uuid must not be empty")
	}
	apaas := Service{Type: ServiceAPaaS, RoomUUID: roomUUID, UserUUID: userUUID, Role: role,
		Privileges: []Privilege{{PrivAPaaSRoomUser, expire}}}
	rtm := Service{Type: ServiceRTM, UserID: userUUID, Privileges: []Privilege{{PrivLogin, expire}}}
	sum := md5.Sum([]byte(userUUID))
	var chatID [2 * md5.Size]byte
	hex.Encode(chatID[:], sum[:])
	chat := Service{Type: ServiceChat, UserID: string(chatID[:]), Privileges: []Privilege{{PrivChatUser, expire}}}
	return b.Sign(&Token{Expire: expire, Services: []Service{apaas, rtm, chat}})
}

// EducationUser builds an APaaS user token (role -1, as Agora's builder).
func (b *Builder) EducationUser(userUUID string, expire uint32) (string, error) {
	if userUUID == "" {
		return "", fmt.Errorf("education user uuid is empty")
	}
	s := Service{Type: ServiceAPaaS, UserUUID: userUUID, Role: -1, Privileges: []Privilege{{PrivAPaaSUser, expire}}}
	return b.Sign(&Token{Expire: expire, Services: []Service{s}})
}

// EducationApp builds an APaaS app token (role -1, as Agora's builder).
func (b *Builder) EducationApp(expire uint32) (string, error) {
	s := Service{Type: ServiceAPaaS, Role: -1, Privileges: []Privilege{{PrivAPaaSApp, expire}}}
	return b.Sign(&Token{Expire: expire, Services: []Service{s}})
}
