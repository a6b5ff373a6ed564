package accesstoken

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// The JSON form of a token is the token CLI's schema, shared with the
// conformance vectors:
//
//	{"version":"007","app_id":…,"issue_ts":…,"expire":…,"salt":…,
//	 "services":[{"type":"rtc","channel":…,"uid":…,"privileges":{"join_channel":N,…}},…]}
//
// Each service carries only the keys of its type, and a privilege appears
// only when the token has it. Privileges without a name (none of ConvoAI's
// or STT's has one) are keyed by their decimal number. Input is strict:
// an unknown key, service type, privilege, resource or permission name is
// an error that names it.

// privilegeNames maps each service type's privilege keys to their names.
var privilegeNames = map[ServiceType][]string{
	ServiceRTC:       {1: "join_channel", 2: "publish_audio_stream", 3: "publish_video_stream", 4: "publish_data_stream"},
	ServiceRTM:       {1: "login"},
	ServiceStreaming: {1: "publish_mix_stream", 2: "publish_raw_stream"},
	ServiceFPA:       {1: "login"},
	ServiceChat:      {1: "user", 2: "app"},
	ServiceFCDN:      {1: "publish", 2: "play"},
	ServiceAPaaS:     {1: "room_user", 2: "user", 3: "app"},
	ServiceRTM2:      {1: "login"},
}

// PrivilegeName returns the JSON name of privilege key of service type st,
// or its decimal number when the privilege has no name.
func PrivilegeName(st ServiceType, key uint16) string {
	if names := privilegeNames[st]; int(key) < len(names) && names[key] != "" {
		return names[key]
	}
	return strconv.Itoa(int(key))
}

// ParsePrivilegeName maps a privilege name of service type st (or a
// decimal privilege number) to its key.
func ParsePrivilegeName(st ServiceType, name string) (uint16, error) {
	if i := slices.Index(privilegeNames[st], name); i > 0 {
		return uint16(i), nil
	}
	if n, err := strconv.ParseUint(name, 10, 16); err == nil {
		return uint16(n), nil
	}
	var known []string
	for _, n := range privilegeNames[st] {
		if n != "" {
			known = append(known, n)
		}
	}
	if len(known) == 0 {
		return 0, fmt.Errorf("%s privilege %q is not a privilege number (%s privileges have no names)", st, name, st)
	}
	return 0, fmt.Errorf("%s privilege %q is not one of %s (or a privilege number)", st, name, strings.Join(known, ", "))
}

// RTM2 resource and permission types, as numbered by Agora.
const (
	RTM2ResourceMessageChannels uint16 = 0
	RTM2ResourceStreamChannels  uint16 = 1
	RTM2ResourceGroupChannels   uint16 = 2
	RTM2ResourceServerGroups    uint16 = 3
	RTM2ResourceUsers           uint16 = 4

	RTM2PermissionRead  uint16 = 0
	RTM2PermissionWrite uint16 = 1
)

var (
	rtm2ResourceNames   = []string{"message_channels", "stream_channels", "group_channels", "server_groups", "users"}
	rtm2PermissionNames = []string{"read", "write"}
)

// serviceKeys lists, in output order, the keys a service of each type has
// besides "type" and "privileges".
var serviceKeys = map[ServiceType][]string{
	ServiceRTC:       {"channel", "uid"},
	ServiceRTM:       {"user_id"},
	ServiceStreaming: {"channel", "account"},
	ServiceFPA:       nil,
	ServiceChat:      {"user_id"},
	ServiceFCDN:      {"channel", "account"},
	ServiceAPaaS:     {"room_uuid", "user_uuid", "role"},
	ServiceRTM2:      {"user_id", "permissions"},
	ServiceConvoAI:   nil,
	ServiceSTT:       nil,
}

// MarshalJSON writes the token in the token CLI's schema. The signature is
// not part of it.
func (t Token) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"version":"` + Version + `","app_id":`)
	writeJSONString(&b, t.AppID)
	fmt.Fprintf(&b, `,"issue_ts":%d,"expire":%d,"salt":%d,"services":[`, t.IssueTs, t.Expire, t.Salt)
	for i := range t.Services {
		if i > 0 {
			b.WriteByte(',')
		}
		s, err := t.Services[i].MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("service %d: %w", i+1, err)
		}
		b.Write(s)
	}
	b.WriteString("]}")
	return b.Bytes(), nil
}

// UnmarshalJSON reads a token in the token CLI's schema. "version" may be
// left out; issue_ts and salt may be left out (zero) for a Builder to
// fill. It checks the shape only; Validate checks the values.
func (t *Token) UnmarshalJSON(data []byte) error {
	obj, err := jsonObject(data, "token")
	if err != nil {
		return err
	}
	var out Token
	for _, kv := range obj {
		var err error
		switch kv.key {
		case "version":
			var v string
			if err = json.Unmarshal(kv.val, &v); err == nil && v != Version {
				err = fmt.Errorf("is %q, want %q", v, Version)
			}
		case "app_id":
			err = json.Unmarshal(kv.val, &out.AppID)
		case "issue_ts":
			err = json.Unmarshal(kv.val, &out.IssueTs)
		case "expire":
			err = json.Unmarshal(kv.val, &out.Expire)
		case "salt":
			err = json.Unmarshal(kv.val, &out.Salt)
		case "services":
			var raw []json.RawMessage
			if err = json.Unmarshal(kv.val, &raw); err != nil {
				break
			}
			out.Services = make([]Service, len(raw))
			for i, r := range raw {
				if err = out.Services[i].UnmarshalJSON(r); err != nil {
					err = fmt.Errorf("service %d: %w", i+1, err)
					break
				}
			}
		default:
			return fmt.Errorf("token: unknown key %q (want version, app_id, issue_ts, expire, salt, services)", kv.key)
		}
		if err != nil {
			return fmt.Errorf("token %s: %w", kv.key, err)
		}
	}
	*t = out
	return nil
}

// MarshalJSON writes one service in the token CLI's schema: its type
// name, the keys of its type and its privileges by name.
func (s Service) MarshalJSON() ([]byte, error) {
	keys, ok := serviceKeys[s.Type]
	if !ok {
		return nil, fmt.Errorf("unknown service type %d", uint16(s.Type))
	}
	var b bytes.Buffer
	b.WriteString(`{"type":"` + s.Type.String() + `"`)
	for _, k := range keys {
		if k == "permissions" {
			continue // after the privileges
		}
		b.WriteString(`,"` + k + `":`)
		switch k {
		case "channel":
			writeJSONString(&b, s.Channel)
		case "uid":
			writeJSONString(&b, s.UID)
		case "account":
			writeJSONString(&b, s.Account)
		case "user_id":
			writeJSONString(&b, s.UserID)
		case "room_uuid":
			writeJSONString(&b, s.RoomUUID)
		case "user_uuid":
			writeJSONString(&b, s.UserUUID)
		case "role":
			b.WriteString(strconv.Itoa(int(s.Role)))
		}
	}
	b.WriteString(`,"privileges":{`)
	p := slices.Clone(s.Privileges)
	sortPrivileges(p)
	for i, kv := range p {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, PrivilegeName(s.Type, kv.Key))
		b.WriteString(":" + strconv.FormatUint(uint64(kv.Expire), 10))
	}
	b.WriteByte('}')
	if s.Type == ServiceRTM2 {
		b.WriteString(`,"permissions":[`)
		for i, p := range s.Permissions {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"resource_type":%d,"permission_type":%d,"resources":[`, p.ResourceType, p.PermissionType)
			for j, r := range p.Resources {
				if j > 0 {
					b.WriteByte(',')
				}
				writeJSONString(&b, r)
			}
			b.WriteString("]}")
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads one service in the token CLI's schema. A key that
// does not belong to the service's type is an error. "uid" may also be a
// JSON number (0 means any uid, packed as "").
func (s *Service) UnmarshalJSON(data []byte) error {
	obj, err := jsonObject(data, "service")
	if err != nil {
		return err
	}
	var out Service
	typeRaw, ok := obj.get("type")
	if !ok {
		return fmt.Errorf(`service has no "type" (one of %s)`, typeNameList())
	}
	var name string
	if err := json.Unmarshal(typeRaw, &name); err != nil {
		return fmt.Errorf("service type: %w", err)
	}
	st, ok := ParseServiceType(name)
	if !ok {
		return fmt.Errorf("service type %q is not one of %s", name, typeNameList())
	}
	out.Type = st
	for _, kv := range obj {
		if kv.key == "type" {
			continue
		}
		if kv.key != "privileges" && !slices.Contains(serviceKeys[st], kv.key) {
			return fmt.Errorf("%s service: unknown key %q (want %s)", st, kv.key, strings.Join(append([]string{"type"}, append(serviceKeys[st], "privileges")...), ", "))
		}
		var err error
		switch kv.key {
		case "channel":
			err = json.Unmarshal(kv.val, &out.Channel)
		case "uid":
			out.UID, err = unmarshalUID(kv.val)
		case "account":
			err = json.Unmarshal(kv.val, &out.Account)
		case "user_id":
			err = json.Unmarshal(kv.val, &out.UserID)
		case "room_uuid":
			err = json.Unmarshal(kv.val, &out.RoomUUID)
		case "user_uuid":
			err = json.Unmarshal(kv.val, &out.UserUUID)
		case "role":
			err = json.Unmarshal(kv.val, &out.Role)
		case "privileges":
			out.Privileges, err = unmarshalPrivileges(st, kv.val)
		case "permissions":
			out.Permissions, err = unmarshalPermissions(kv.val)
		}
		if err != nil {
			return fmt.Errorf("%s service %s: %w", st, kv.key, err)
		}
	}
	*s = out
	return nil
}

func unmarshalUID(raw json.RawMessage) (string, error) {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var n uint32
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", fmt.Errorf("want a string or a number 0..4294967295: %w", err)
	}
	return UIDString(n), nil
}

func unmarshalPrivileges(st ServiceType, raw json.RawMessage) ([]Privilege, error) {
	obj, err := jsonObject(raw, "privileges")
	if err != nil {
		return nil, err
	}
	var out []Privilege
	for _, kv := range obj {
		key, err := ParsePrivilegeName(st, kv.key)
		if err != nil {
			return nil, err
		}
		var v uint32
		if err := json.Unmarshal(kv.val, &v); err != nil {
			return nil, fmt.Errorf("privilege %s: want seconds 0..4294967295: %w", kv.key, err)
		}
		for _, p := range out {
			if p.Key == key {
				return nil, fmt.Errorf("privilege %s (%d) given twice", kv.key, key)
			}
		}
		out = append(out, Privilege{Key: key, Expire: v})
	}
	sortPrivileges(out)
	return out, nil
}

func unmarshalPermissions(raw json.RawMessage) ([]RTM2Permission, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	out := make([]RTM2Permission, 0, len(list))
	for i, r := range list {
		p, err := unmarshalPermission(r)
		if err != nil {
			return nil, fmt.Errorf("permission %d: %w", i+1, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// unmarshalPermission reads {"resource_type":N,"permission_type":N,
// "resources":[…]}. The names "resource" and "permission" may stand for
// or accompany the numbers; when both are given they must agree.
func unmarshalPermission(raw json.RawMessage) (RTM2Permission, error) {
	obj, err := jsonObject(raw, "permission")
	if err != nil {
		return RTM2Permission{}, err
	}
	var p RTM2Permission
	var rt, pt *uint16
	var rtName, ptName *string
	for _, kv := range obj {
		var err error
		switch kv.key {
		case "resource_type":
			rt = new(uint16)
			err = json.Unmarshal(kv.val, rt)
		case "permission_type":
			pt = new(uint16)
			err = json.Unmarshal(kv.val, pt)
		case "resource":
			rtName = new(string)
			err = json.Unmarshal(kv.val, rtName)
		case "permission":
			ptName = new(string)
			err = json.Unmarshal(kv.val, ptName)
		case "resources":
			err = json.Unmarshal(kv.val, &p.Resources)
		default:
			return p, fmt.Errorf("unknown key %q (want resource_type, permission_type, resources; resource and permission names are accepted too)", kv.key)
		}
		if err != nil {
			return p, fmt.Errorf("%s: %w", kv.key, err)
		}
	}
	if p.ResourceType, err = namedNumber("resource", rt, rtName, rtm2ResourceNames); err != nil {
		return p, err
	}
	if p.PermissionType, err = namedNumber("permission", pt, ptName, rtm2PermissionNames); err != nil {
		return p, err
	}
	if p.Resources == nil {
		p.Resources = []string{}
	}
	return p, nil
}

// namedNumber reconciles a "<what>_type" number with an optional name.
func namedNumber(what string, num *uint16, name *string, names []string) (uint16, error) {
	if name != nil {
		i := slices.Index(names, *name)
		if i < 0 {
			return 0, fmt.Errorf("%s %q is not one of %s", what, *name, strings.Join(names, ", "))
		}
		if num != nil && int(*num) != i {
			return 0, fmt.Errorf("%s %q is %s_type %d, not %d", what, *name, what, i, *num)
		}
		return uint16(i), nil
	}
	if num == nil {
		return 0, fmt.Errorf("%s_type missing", what)
	}
	return *num, nil
}

// jsonKV is one member of a JSON object, in input order.
type jsonKV struct {
	key string
	val json.RawMessage
}

type jsonObj []jsonKV

func (o jsonObj) get(key string) (json.RawMessage, bool) {
	for _, kv := range o {
		if kv.key == key {
			return kv.val, true
		}
	}
	return nil, false
}

// jsonObject splits a JSON object into its members, matching keys exactly
// (encoding/json would match them case-insensitively) and rejecting a key
// given twice.
func jsonObject(data []byte, what string) (jsonObj, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%s: want a JSON object, got %s", what, jsonKind(tok))
	}
	var obj jsonObj
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		key := tok.(string) // object keys are always strings
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, key, err)
		}
		if _, dup := obj.get(key); dup {
			return nil, fmt.Errorf("%s: key %q given twice", what, key)
		}
		obj = append(obj, jsonKV{key, val})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: data after the JSON object", what)
	}
	return obj, nil
}

func jsonKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
	case string:
		return "a string"
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	}
	return fmt.Sprint(tok)
}

func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s) // marshalling a string cannot fail
	b.Write(q)
}

func typeNameList() string {
	names := make([]string, 0, len(serviceNames))
	for st := ServiceRTC; st <= ServiceSTT; st++ {
		names = append(names, st.String())
	}
	return strings.Join(names, ", ")
}
