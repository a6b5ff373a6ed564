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
		w.u16(uint16(len(s.Permissions)))
		for _, p := range s.Permissions {
			w.u16(p.ResourceType)
			w.u16(p.PermissionType)
			w.u16(uint16(len(p.Resources)))
			for _, r := range p.Resources {
				w.str(r)
			}
		}
	}
}

// reader reads little-endian fields and remembers the first error, so a
// sequence of reads needs one check. It never reads past its buffer.
type reader struct {
	buf []byte
	off int
	err error
}

func (r *reader) need(n int, what string) bool {
	if r.err != nil {
		return false
	}
	if len(r.buf)-r.off < n {
		r.err = fmt.Errorf("token truncated at %s (offset %d, need %d bytes, have %d)", what, r.off, n, len(r.buf)-r.off)
		return false
	}
	return true
}

func (r *reader) u16(what string) uint16 {
	if !r.need(2, what) {
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

func (r *reader) bytes(what string) []byte {
	n := int(r.u16(what + " length"))
	if !r.need(n, what) {
		return nil
	}
	b := r.buf[r.off : r.off+n]
	r.off += n
	return b
}

func (r *reader) str(what string) string { return string(r.bytes(what)) }

func (r *reader) privileges(what string) []Privilege {
	n := int(r.u16(what + " privilege count"))
	// Each entry is 6 bytes; check before allocating.
	if !r.need(6*n, what+" privileges") {
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
	name := s.Type.String()
	s.Privileges = r.privileges(name)
	switch s.Type {
	case ServiceRTC:
		s.Channel = r.str("rtc channel")
		s.UID = r.str("rtc uid")
	case ServiceRTM, ServiceChat:
		s.UserID = r.str(name + " user id")
	case ServiceStreaming, ServiceFCDN:
		s.Channel = r.str(name + " channel")
		s.Account = r.str(name + " account")
	case ServiceAPaaS:
		s.RoomUUID = r.str("apaas room uuid")
		s.UserUUID = r.str("apaas user uuid")
		s.Role = int16(r.u16("apaas role"))
	case ServiceRTM2:
		s.UserID = r.str("rtm2 user id")
		n := int(r.u16("rtm2 permission count"))
		if !r.need(6*n, "rtm2 permissions") {
			return
		}
		s.Permissions = make([]RTM2Permission, n)
		for i := range s.Permissions {
			p := &s.Permissions[i]
			p.ResourceType = r.u16("rtm2 resource type")
			p.PermissionType = r.u16("rtm2 permission type")
			m := int(r.u16("rtm2 resource count"))
			if !r.need(2*m, "rtm2 resources") {
				return
			}
			p.Resources = make([]string, m)
			for j := range p.Resources {
				p.Resources[j] = r.str("rtm2 resource")
			}
		}
	}
}
