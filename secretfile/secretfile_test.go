package secretfile

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestRead(t *testing.T) {
	const secret = "5cfd2fd1755d40ecb72977518be15d3b"
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string // the secret, or a substring of the error
		ok            bool
	}{
		{"plain", secret, 0o600, secret, true},
		{"trailing newline", secret + "\n", 0o600, secret, true},
		{"surrounding space", "  " + secret + " \r\n", 0o640, secret, true},
		{"owner only read", secret, 0o400, secret, true},
		{"world readable", secret, 0o644, "has mode 0644; a secret file must be 0600 or 0640", false},
		{"group writable", secret, 0o660, "has mode 0660", false},
		{"empty", "\n", 0o600, "is empty", false},
		{"two lines", secret + "\n" + secret, 0o600, "on one line", false},
		{"too large", strings.Repeat("a", MaxSize+1), 0o600, "larger than 4096 bytes", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			got, err := Read(path)
			if tc.ok {
				if err != nil || got.Reveal() != tc.want {
					t.Fatalf("Read = %q, %v; want %q", got.Reveal(), err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatal("the error quotes the secret")
			}
		})
	}
	if _, err := Read(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory: %v", err)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing file read")
	}
}

func TestSecretNeverPrints(t *testing.T) {
	const v = "5cfd2fd1755d40ecb72977518be15d3b"
	s := NewSecret(v)
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "secret", s)
	js, _ := json.Marshal(struct{ S Secret }{s})
	ys, _ := yaml.Marshal(struct{ S Secret }{s})
	for _, out := range []string{s.String(), s.GoString(), fmt.Sprintf("%v %+v %#v %s", s, s, s, s),
		fmt.Sprintf("%+v", struct{ S *Secret }{&s}), logged.String(), string(js), string(ys)} {
		if strings.Contains(out, v) {
			t.Fatalf("secret printed: %s", out)
		}
	}
	if s.Reveal() != v || s.IsZero() || !NewSecret("").IsZero() || !s.Equal(NewSecret(v)) {
		t.Fatal("Reveal, IsZero or Equal wrong")
	}
}
