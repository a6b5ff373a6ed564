package fleetsim

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Registering into an existing credentials file keeps its owner, group
// and mode. A mosquitto password file is root:mosquitto 0640; rewritten
// as root:root 0600, mosquitto can no longer read it after a reload and
// refuses every login. The test runs as root (as make test does) and
// uses group 4 (adm) for mosquitto's.
func TestRegisterKeepsGroupAndMode(t *testing.T) {
	const gid = 4
	seed := make([]byte, seedBytes)
	for _, format := range []Format{FormatMosquitto, FormatIssuer} {
		t.Run(string(format), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "passwd")
			if err := Register(path, format, seed, []string{"dev-a"}); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(path, 0, gid); err != nil {
				t.Fatalf("chown (the test runs as root): %v", err)
			}
			if err := os.Chmod(path, 0o640); err != nil {
				t.Fatal(err)
			}
			if err := Register(path, format, seed, []string{"dev-a", "dev-b"}); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			sys := st.Sys().(*syscall.Stat_t)
			if st.Mode().Perm() != 0o640 || sys.Uid != 0 || sys.Gid != gid {
				t.Fatalf("after register: %v %d:%d, want 0640 0:%d", st.Mode().Perm(), sys.Uid, sys.Gid, gid)
			}
		})
	}
}
