package agent

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"agoratokens/wire"
)

// Saving a token over an existing file keeps the file's group and mode
// (package atomicfile), as every writer of the project does. The test
// runs as root (as make test does); group 4 is adm.
func TestSaveKeepsGroupAndMode(t *testing.T) {
	const gid = 4
	s := &store{dir: t.TempDir(), log: testLogger(t)}
	tok := &savedToken{Grant: wire.Grant{Name: "video", Token: "007x"}}
	if err := s.save(tok); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.dir, fileName("video"))
	if err := os.Chown(path, 0, gid); err != nil {
		t.Fatalf("chown (the test runs as root): %v", err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := s.save(tok); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if g := st.Sys().(*syscall.Stat_t).Gid; st.Mode().Perm() != 0o640 || g != gid {
		t.Fatalf("after save: %v group %d, want 0640 group %d", st.Mode().Perm(), g, gid)
	}
	if entries, _ := os.ReadDir(s.dir); len(entries) != 1 {
		t.Fatalf("%d files in the state directory, want 1", len(entries))
	}
}
