package socket

import (
	"fmt"
	"net"
	"slices"

	"golang.org/x/sys/unix"
)

// Peer is who is at the other end of a connection, as the kernel saw it
// when the peer connected.
type Peer struct {
	PID, UID, GID int
	// Groups are the peer's supplementary groups (SO_PEERGROUPS); empty
	// where the kernel cannot tell.
	Groups []int
}

// authorize decides whether peer may use the socket: its uid is allowed,
// or its primary or a supplementary group is.
func authorize(p Peer, allowUIDs, allowGIDs []int) error {
	if slices.Contains(allowUIDs, p.UID) || slices.Contains(allowGIDs, p.GID) {
		return nil
	}
	for _, g := range p.Groups {
		if slices.Contains(allowGIDs, g) {
			return nil
		}
	}
	return fmt.Errorf("uid %d (gid %d) is not allowed to use this socket", p.UID, p.GID)
}

// peerOf reads the credentials of the process at the other end of c.
func peerOf(c *net.UnixConn) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	var (
		p       Peer
		credErr error
	)
	err = raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			credErr = err
			return
		}
		p = Peer{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}
		p.Groups = peerGroups(int(fd))
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	return p, nil
}
