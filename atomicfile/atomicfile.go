// Package atomicfile replaces files so that a reader sees the old content
// or the new, never a part, even across a crash or power loss, and so that
// a replaced file keeps who may read it.
//
// Every file the binaries rewrite goes through here: the agent's saved
// tokens, the device credentials file, a mosquitto password file written
// by the fleet simulator, the files `device add --out` writes. Keeping the
// owner, group and mode matters: a mosquitto password file is typically
// root:mosquitto 0640, and rewriting it as root:root 0600 locks mosquitto
// out of it, so that it refuses every login after its next reload.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Write replaces path by data. It writes a temporary file in the same
// directory (named NAME.RANDOM.tmp), fsyncs it, renames it over path and
// fsyncs the directory, so the new content is durable once Write returns.
//
// A new file gets mode perm. A file that exists keeps its mode, owner and
// group (as mosquitto_passwd keeps them); if the owner and group cannot
// be kept (a user other than root rewriting another user's file), Write
// fails and leaves the file as it was rather than change who may read it.
func Write(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, 0o777, 0)
}

// WritePrivate is Write for a file that holds secrets or their hashes: a
// new file is 0600, and an existing one keeps its owner and group but
// its mode is narrowed to what package secretfile accepts (at most 0640,
// never group-writable or readable by others) and always lets the owner
// read and write it back.
func WritePrivate(path string, data []byte) error {
	return write(path, data, 0o600, 0o640, 0o600)
}

func write(path string, data []byte, perm, keepMask, always fs.FileMode) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	mode, uid, gid := perm, -1, -1
	if st, err := os.Stat(path); err == nil {
		if !st.Mode().IsRegular() {
			return errors.New("not a regular file")
		}
		mode = st.Mode().Perm()&keepMask | always
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(sys.Uid), int(sys.Gid)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, base+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// Owner, group and mode are set before any content is written, so
	// that the content is never readable by more than the final file.
	if uid >= 0 {
		if err := keepOwner(tmp, uid, gid); err != nil {
			return err
		}
	}
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// keepOwner gives the temporary file the replaced file's owner and group,
// where they differ from the ones it was created with.
func keepOwner(tmp *os.File, uid, gid int) error {
	st, err := tmp.Stat()
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || (int(sys.Uid) == uid && int(sys.Gid) == gid) {
		return nil
	}
	if err := tmp.Chown(uid, gid); err != nil {
		return fmt.Errorf("keep owner %d and group %d of the file it replaces: %w", uid, gid, err)
	}
	return nil
}
