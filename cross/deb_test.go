// Package cross_test builds the Debian packages with cross/deb.sh and
// checks them with dpkg: metadata, file list, and a real install,
// reinstall and purge (maintainer scripts included) into a scratch root.
package cross_test

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

const version = "v1.2.0"

var (
	buildOnce sync.Once
	debDir    string
	buildErr  string
)

// debs builds the amd64 and armhf packages once for all tests.
func debs(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"dpkg", "dpkg-deb", "systemd-sysusers", "systemd-tmpfiles", "systemctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install Debian's dpkg and systemd packages (make test-deps)", tool)
		}
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "agora-deb-")
		if err != nil {
			buildErr = err.Error()
			return
		}
		debDir = dir
		env := append(os.Environ(), "DIST="+filepath.Join(dir, "dist"), "OUT="+filepath.Join(dir, "deb"))
		for _, step := range [][]string{
			{"./build.sh", version, "amd64", "armv6"},
			{"./deb.sh", version, "amd64", "armhf"},
		} {
			cmd := exec.Command(step[0], step[1:]...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = strings.Join(step, " ") + ": " + err.Error() + "\n" + string(out)
				return
			}
		}
	})
	if buildErr != "" {
		t.Fatal(buildErr)
	}
	return filepath.Join(debDir, "deb")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if debDir != "" {
		os.RemoveAll(debDir)
	}
	os.Exit(code)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func pkgPath(t *testing.T, pkg, arch string) string {
	return filepath.Join(debs(t), pkg+"_1.2.0_"+arch+".deb")
}

func TestPackageMetadata(t *testing.T) {
	tests := []struct {
		pkg, arch string
		conffile  string
	}{
		{"agora-token-agent", "amd64", "/etc/agora-token-agent/agent.yaml"},
		{"agora-token-agent", "armhf", "/etc/agora-token-agent/agent.yaml"},
		{"agora-token-issuer", "amd64", ""},
	}
	for _, tt := range tests {
		t.Run(tt.pkg+"_"+tt.arch, func(t *testing.T) {
			deb := pkgPath(t, tt.pkg, tt.arch)
			info := run(t, "dpkg-deb", "--info", deb)
			for _, want := range []string{"Package: " + tt.pkg, "Version: 1.2.0", "Architecture: " + tt.arch, "postinst", "prerm", "postrm"} {
				if !strings.Contains(info, want) {
					t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
				}
			}
			conffiles, _ := exec.Command("dpkg-deb", "--info", deb, "conffiles").Output()
			if got := strings.TrimSpace(string(conffiles)); got != tt.conffile {
				t.Errorf("conffiles = %q, want %q", got, tt.conffile)
			}
		})
	}
}

func TestAgentPackageContents(t *testing.T) {
	contents := run(t, "dpkg-deb", "--contents", pkgPath(t, "agora-token-agent", "amd64"))
	want := map[string]string{ // path → mode and owner as dpkg-deb shows them
		"./usr/bin/agora-token-agent":                         "-rwxr-xr-x root/root",
		"./lib/systemd/system/agora-token-agent.service":      "-rw-r--r-- root/root",
		"./usr/lib/sysusers.d/agora-token-agent.conf":         "-rw-r--r-- root/root",
		"./usr/lib/tmpfiles.d/agora-token-agent.conf":         "-rw-r--r-- root/root",
		"./etc/agora-token-agent/agent.yaml":                  "-rw-r----- root/root",
		"./usr/share/doc/agora-token-agent/deploy.md":         "-rw-r--r-- root/root",
		"./usr/share/doc/agora-token-agent/examples/led.conf": "-rw-r--r-- root/root",
		"./": "drwxr-xr-x root/root",
	}
	for path, attrs := range want {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(attrs) + `\s.*\s` + regexp.QuoteMeta(path) + `$`)
		if !re.MatchString(contents) {
			t.Errorf("no %s %s in:\n%s", attrs, path, contents)
		}
	}
}

// The armhf package must carry a 32-bit ARM binary (the armv6 build).
func TestArmhfBinary(t *testing.T) {
	root := t.TempDir()
	run(t, "dpkg", "-x", pkgPath(t, "agora-token-agent", "armhf"), root)
	f, err := elf.Open(filepath.Join(root, "usr/bin/agora-token-agent"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_ARM || f.Class != elf.ELFCLASS32 {
		t.Fatalf("armhf binary is %v %v, want 32-bit ARM", f.Class, f.Machine)
	}
	if _, err := f.DynamicSymbols(); err == nil {
		t.Error("armhf binary is dynamically linked, want static (CGO_ENABLED=0)")
	}
}

// The armhf binary, as cross/build.sh links it (sections aligned to
// 4 KiB, inlining off outside the runtime and crypto), must load and run
// on the Pi Zero's CPU, here an ARM1176 under qemu-user.
func TestArmhfBinaryRuns(t *testing.T) {
	qemu, err := exec.LookPath("qemu-arm-static")
	if err != nil {
		t.Fatal("qemu-arm-static not found: install Debian's qemu-user-static package (make test-deps)")
	}
	root := t.TempDir()
	run(t, "dpkg", "-x", pkgPath(t, "agora-token-agent", "armhf"), root)
	bin := filepath.Join(root, "usr/bin/agora-token-agent")
	if got, want := strings.TrimSpace(run(t, qemu, "-cpu", "arm1176", bin, "--version")), "agora-token-agent "+version; got != want {
		t.Errorf("--version printed %q, want %q", got, want)
	}
	cfg := filepath.Join(root, "etc/agora-token-agent/agent.yaml")
	// The shipped config names a password file that is not there yet:
	// the YAML decoder, the validation and the error's key all run.
	out, err := exec.Command(qemu, "-cpu", "arm1176", bin, "check-config", "--config", cfg).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "broker.password_file") {
		t.Errorf("check-config of the shipped config: %v, %s; want exit 1 naming broker.password_file", err, out)
	}
}

// scratchRoot is an empty system for dpkg --root: a dpkg database and a
// passwd/group with root only.
func scratchRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{
		"var/lib/dpkg/status": "",
		"etc/passwd":          "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":           "root:x:0:\n",
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// dpkgRoot runs dpkg on root with the maintainer scripts run outside a
// chroot (they honour DPKG_ROOT).
func dpkgRoot(t *testing.T, root string, args ...string) string {
	t.Helper()
	return run(t, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-not-root"}, args...)...)
}

func TestInstallReinstallPurge(t *testing.T) {
	deb := pkgPath(t, "agora-token-agent", "amd64")
	root := scratchRoot(t)
	out := dpkgRoot(t, root, "-i", deb)

	// postinst: the system user, the config dir and file for its group.
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	m := regexp.MustCompile(`(?m)^agora-token-agent:x:(\d+):(\d+):[^:]*:/var/lib/agora-token-agent:/usr/sbin/nologin$`).FindStringSubmatch(string(passwd))
	if m == nil {
		t.Fatalf("postinst made no agora-token-agent system user:\n%s\n%s", passwd, out)
	}
	gid := m[2]
	for path, wantMode := range map[string]string{
		"etc/agora-token-agent":            "drwxr-x---",
		"etc/agora-token-agent/agent.yaml": "-rw-r-----",
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().String() != wantMode {
			t.Errorf("/%s mode %s, want %s", path, fi.Mode(), wantMode)
		}
		ls := run(t, "stat", "-c", "%u:%g", filepath.Join(root, path))
		if strings.TrimSpace(ls) != "0:"+gid {
			t.Errorf("/%s owned by %s, want 0:%s (root, the agent's group)", path, strings.TrimSpace(ls), gid)
		}
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/agora-token-agent.service")
	if _, err := os.Lstat(wants); err != nil {
		t.Errorf("postinst did not enable the unit: %v", err)
	}
	if v := run(t, filepath.Join(root, "usr/bin/agora-token-agent"), "--version"); !strings.Contains(v, version) {
		t.Errorf("installed binary says %q, want version %s", v, version)
	}

	// An operator's edit to the conffile survives a reinstall.
	conf := filepath.Join(root, "etc/agora-token-agent/agent.yaml")
	edited := []byte("device_id: cam-7\nbroker:\n  url: ssl://broker.internal:8883\n")
	if err := os.WriteFile(conf, edited, 0o640); err != nil {
		t.Fatal(err)
	}
	dpkgRoot(t, root, "-i", deb)
	if got, _ := os.ReadFile(conf); string(got) != string(edited) {
		t.Errorf("reinstall replaced the edited conffile with:\n%s", got)
	}

	// purge: files, the enable link and the state go.
	if err := os.MkdirAll(filepath.Join(root, "var/lib/agora-token-agent"), 0o700); err != nil {
		t.Fatal(err)
	}
	dpkgRoot(t, root, "--purge", "agora-token-agent")
	for _, gone := range []string{"usr/bin/agora-token-agent", "lib/systemd/system/agora-token-agent.service", "etc/agora-token-agent/agent.yaml", "var/lib/agora-token-agent"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); err == nil {
			t.Errorf("/%s still there after purge", gone)
		}
	}
	if _, err := os.Lstat(wants); err == nil {
		t.Error("unit still enabled after purge")
	}
}

// Both packages install into an empty root, one with only a dpkg
// database: no /etc at all. The agent's package brings /etc with its
// conffile; the issuer's has no file there, and its postinst must still
// create the system user and the config directory.
func TestInstallIntoEmptyRoot(t *testing.T) {
	for _, pkg := range []string{"agora-token-agent", "agora-token-issuer"} {
		t.Run(pkg, func(t *testing.T) {
			deb := pkgPath(t, pkg, "amd64")
			root := t.TempDir()
			for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			out := dpkgRoot(t, root, "-i", deb)

			passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
			m := regexp.MustCompile(`(?m)^` + pkg + `:x:(\d+):(\d+):[^:]*:/var/lib/` + pkg + `:/usr/sbin/nologin$`).FindStringSubmatch(string(passwd))
			if m == nil {
				t.Fatalf("postinst made no %s system user:\n%s\n%s", pkg, passwd, out)
			}
			dir := filepath.Join(root, "etc", pkg)
			fi, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().String() != "drwxr-x---" {
				t.Errorf("/etc/%s mode %s, want drwxr-x---", pkg, fi.Mode())
			}
			if got := strings.TrimSpace(run(t, "stat", "-c", "%u:%g", dir)); got != "0:"+m[2] {
				t.Errorf("/etc/%s owned by %s, want 0:%s (root, the service's group)", pkg, got, m[2])
			}
			if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants", pkg+".service")); err != nil {
				t.Errorf("postinst did not enable the unit: %v", err)
			}
			if st := run(t, "dpkg", "--root="+root, "-s", pkg); !strings.Contains(st, "Status: install ok installed") {
				t.Errorf("dpkg -s %s:\n%s", pkg, st)
			}
		})
	}
}
