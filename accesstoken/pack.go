package accesstoken

import (
	"encoding/binary"
	"fmt"
)

// packer appends little-endian fields to a buffer.
type packer struct{ buf []byte }

func (w *packer) u16(v uint16) { w.buf = binary.LittleEndian.AppendUint16(w.buf, v) }
func (w *packer) u32(v uint32) { w.buf = binary.LittleEndian.AppendUint32(w.buf, v) }
func (w *packer) str(s string) {
	w.u16(uint16(len(s)))
	w.buf = append(w.buf, s...)
}

func (w *packer) privileges(p []Privilege) {
	w.u16(uint16(len(p)))
	// Pack in ascending key order without sorting the caller's slice.
	var last int = -1
	for range p {
		next := -1
		for j, q := range p {
			if int(q.Key) > last && (next < 0 || q.Key < p[next].Key) {
				next = j
			}
		}
		w.u16(p[next].Key)
		w.u32(p[next].Expire)
		last = int(p[next].Key)
	}
}

// packServices packs services in ascending type order, keeping the given
// order among services of the same type.
func packServices(w *packer, svcs []Service) {
	w.u16(uint16(len(svcs)))
	for st := ServiceType(1); st <= ServiceSTT; st++ {
		for i := range svcs {
			if svcs[i].Type == st {
				packService(w, &svcs[i])
			}
		}
	}
}

func packService(w *packer, s *Service) {
	w.u16(uint16(s.Type))
	w.privileges(s.Privileges)
	switch s.Type {
	case ServiceRTC:
		w.str(s.Channel)
		w.str(s.UID)
	case ServiceRTM, ServiceChat:
		w.str(s.UserID)
	case ServiceStreaming, ServiceFCDN:
		w.str(s.Channel)
		w.str(s.Account)
	case ServiceAPaaS:
		w.str(s.RoomUUID)
		w.str(s.UserUUID)
		w.u16(uint16(s.Role))
	case ServiceRTM2:
		w.str(s.UserID)
		packRTM2Permissions(w, s.Permissions)
	}
}

// packRTM2Permissions packs Agora's nested permission map: u16 count of
// resource types, then per resource type (ascending) the type, a u16 count
// of permission types and per permission type (ascending) the type and its
// resource list. The flat slice is walked in that order without sorting
// it; Validate rejects a (resource type, permission type) pair given twice.
func packRTM2Permissions(w *packer, perms []RTM2Permission) {
	nextResource := func(after int) int {
		next := -1
		for _, p := range perms {
			if int(p.ResourceType) > after && (next < 0 || int(p.ResourceType) < next) {
				next = int(p.ResourceType)
			}
		}
		return next
	}
	count := 0
	for rt := nextResource(-1); rt >= 0; rt = nextResource(rt) {
		count++
	}
	w.u16(uint16(count))
	for rt := nextResource(-1); rt >= 0; rt = nextResource(rt) {
		w.u16(uint16(rt))
		n := 0
		for _, p := range perms {
			if int(p.ResourceType) == rt {
				n++
			}
		}
		w.u16(uint16(n))
		last := -1
		for range n {
			next := -1
			for j, p := range perms {
				if int(p.ResourceType) == rt && int(p.PermissionType) > last &&
					(next < 0 || p.PermissionType < perms[next].PermissionType) {
					next = j
				}
			}
			p := perms[next]
			w.u16(p.PermissionType)
			w.u16(uint16(len(p.Resources)))
			for _, r := range p.Resources {
				w.str(r)
			}
			last = int(p.PermissionType)
		}
	}
}

// reader reads little-endian fields and remembers the first error, so a
// sequence of reads needs one check. It never reads past its buffer, and
// it builds an error message only on failure: field names are constants
// and the service being read is kept in scope.
type reader struct {
	buf   []byte
	s     string // the same bytes as buf; text fields are substrings of it
	off   int
	err   error
	scope ServiceType // service being read, 0 for the token header
}

func (r *reader) need(n int, what string) bool { return r.needs(n, what, "") }

func (r *reader) needs(n int, what, suffix string) bool {
	if r.err != nil {
		return false
	}
	if len(r.buf)-r.off < n {
		where := what + suffix
		if r.scope != 0 {
			where = r.scope.String() + " " + where
		}
		r.err = fmt.Errorf("token truncated at %s (offset %d, need %d bytes, have %d)", where, r.off, n, len(r.buf)-r.off)
		return false
	}
	return true
}

func (r *reader) u16(what string) uint16 { return r.u16s(what, "") }

func (r *reader) u16s(what, suffix string) uint16 {
	if !r.needs(2, what, suffix) {
		return 0
	}
	v := binary.LittleEndian.Uint16(r.buf[r.off:])
	r.off += 2
	return v
}

func (r *reader) u32(what string) uint32 {
	if !r.need(4, what) {
		return 0
	}
	v := binary.LittleEndian.Uint32(r.buf[r.off:])
	r.off += 4
	return v
}

func (r *reader) str(what string) string {
	n := int(r.u16s(what, " length"))
	if !r.need(n, what) {
		return ""
	}
	v := r.s[r.off : r.off+n]
	r.off += n
	return v
}

func (r *reader) privileges() []Privilege {
	n := int(r.u16("privilege count"))
	// Each entry is 6 bytes; check before allocating.
	if !r.need(6*n, "privileges") {
		return nil
	}
	p := make([]Privilege, n)
	for i := range p {
		p[i].Key = r.u16("privilege key")
		p[i].Expire = r.u32("privilege expire")
	}
	sortPrivileges(p)
	return p
}

func unpackService(r *reader, s *Service) {
	r.scope = s.Type
	s.Privileges = r.privileges()
	switch s.Type {
	case ServiceRTC:
		s.Channel = r.str("channel")
		s.UID = r.str("uid")
	case ServiceRTM, ServiceChat:
		s.UserID = r.str("user id")
	case ServiceStreaming, ServiceFCDN:
		s.Channel = r.str("channel")
		s.Account = r.str("account")
	case ServiceAPaaS:
		s.RoomUUID = r.str("room uuid")
		s.UserUUID = r.str("user uuid")
		s.Role = int16(r.u16("role"))
	case ServiceRTM2:
		s.UserID = r.str("user id")
		s.Permissions = unpackRTM2Permissions(r)
	}
}

// unpackRTM2Permissions reads the nested permission map into a flat slice
// in packed order. Counts are checked against the bytes left before any
// allocation, so a hostile count cannot make it allocate.
func unpackRTM2Permissions(r *reader) []RTM2Permission {
	nr := int(r.u16("resource type count"))
	// Each resource type takes at least 4 bytes (type, count).
	if !r.need(4*nr, "resource types") {
		return nil
	}
	var perms []RTM2Permission
	for range nr {
		rt := r.u16("resource type")
		np := int(r.u16("permission type count"))
		// Each permission type takes at least 4 bytes (type, count).
		if !r.need(4*np, "permission types") {
			return nil
		}
		for range np {
			p := RTM2Permission{ResourceType: rt, PermissionType: r.u16("permission type")}
			m := int(r.u16("resource count"))
			if !r.need(2*m, "resources") {
				return nil
			}
			p.Resources = make([]string, m)
			for j := range p.Resources {
				p.Resources[j] = r.str("resource")
			}
			perms = append(perms, p)
		}
	}
	return perms
}
