package device

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRoot writes files (relative path → content) under a temp dir.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const piZeroCPUInfo = `processor	: 0
model name	: ARMv6-compatible processor rev 7 (v6l)
BogoMIPS	: 697.95
Features	: half thumb fastmult vfp edsp java tls
CPU architecture: 7

Hardware	: BCM2835
Revision	: 9000c1
Serial		: 00000000abcdef12
Model		: Raspberry Pi Zero W Rev 1.1
`

const x86CPUInfo = `processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) CPU
`

const machineID = "4c4c4544004d3510804cb4c04f4e3732\n"

func TestDetect(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  Board
	}{
		{
			name: "pi zero w, 32-bit kernel",
			files: map[string]string{
				"proc/cpuinfo":           piZeroCPUInfo,
				"proc/device-tree/model": "Raspberry Pi Zero W Rev 1.1\x00",
				"etc/machine-id":         machineID,
			},
			want: Board{IsRaspberryPi: true, Model: "Raspberry Pi Zero W Rev 1.1", Revision: "9000c1",
				Serial: "00000000abcdef12", MachineID: strings.TrimSpace(machineID)},
		},
		{
			name: "pi 4, 64-bit kernel: serial and revision from the device tree",
			files: map[string]string{
				"proc/cpuinfo":                           "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\n",
				"proc/device-tree/model":                 "Raspberry Pi 4 Model B Rev 1.4\x00",
				"proc/device-tree/serial-number":         "10000000DEADBEEF\x00",
				"proc/device-tree/system/linux,revision": "\x00\xd0\x31\x14",
				"etc/machine-id":                         machineID,
			},
			want: Board{IsRaspberryPi: true, Model: "Raspberry Pi 4 Model B Rev 1.4", Revision: "d03114",
				Serial: "10000000deadbeef", MachineID: strings.TrimSpace(machineID)},
		},
		{
			name: "cpuinfo hardware only",
			files: map[string]string{
				"proc/cpuinfo": "Hardware\t: BCM2711\nSerial\t: 100000001234abcd\n",
			},
			want: Board{IsRaspberryPi: true, Serial: "100000001234abcd"},
		},
		{
			name: "x86 server",
			files: map[string]string{
				"proc/cpuinfo":   x86CPUInfo,
				"etc/machine-id": strings.ToUpper(machineID),
			},
			want: Board{MachineID: strings.TrimSpace(machineID)},
		},
		{
			name: "emulator: zero serial, image before first boot",
			files: map[string]string{
				"proc/cpuinfo":   "Hardware\t: BCM2835\nSerial\t: 0000000000000000\n",
				"etc/machine-id": "uninitialized\n",
			},
			want: Board{IsRaspberryPi: true},
		},
		{
			name:  "empty root",
			files: map[string]string{},
			want:  Board{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Detect(fakeRoot(t, tt.files))
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			if got != tt.want {
				t.Errorf("Detect =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestDetectRejectsGarbage(t *testing.T) {
	tests := []struct {
		name, file, content, wantErr string
	}{
		{"machine id", "etc/machine-id", "not-an-id\n", "machine-id"},
		{"serial", "proc/cpuinfo", "Serial\t: 12zz\n", "serial number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Detect(fakeRoot(t, map[string]string{tt.file: tt.content}))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Detect error = %v, want one naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestDetectUnreadable(t *testing.T) {
	root := fakeRoot(t, map[string]string{})
	// A directory where a file belongs cannot be read as a file.
	if err := os.MkdirAll(filepath.Join(root, "etc", "machine-id"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Detect(root); err == nil {
		t.Fatal("Detect read a directory as /etc/machine-id without error")
	}
}

func TestDetectRealRoot(t *testing.T) {
	b, err := Detect("/")
	if err != nil {
		t.Fatalf("Detect(/): %v", err)
	}
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		t.Fatalf("this test compares with /etc/os-release: %v", err)
	}
	if !strings.Contains(string(data), b.OS) || b.OS == "" {
		t.Errorf("Board.OS = %q, not the PRETTY_NAME of /etc/os-release:\n%s", b.OS, data)
	}
}

func TestDeviceID(t *testing.T) {
	pi := Board{IsRaspberryPi: true, Serial: "00000000abcdef12", MachineID: "4c4c4544004d3510804cb4c04f4e3732"}
	tests := []struct {
		name    string
		prefix  string
		board   Board
		want    string
		wantErr string
	}{
		{"pi uses the serial", "cam-", pi, "cam-00000000abcdef12", ""},
		{"pi without prefix", "", pi, "00000000abcdef12", ""},
		{"elsewhere from the machine id", "cam-", Board{MachineID: pi.MachineID, Serial: "1234"}, "cam-" + AppSpecificMachineID(pi.MachineID), ""},
		{"pi without serial falls back", "cam-", Board{IsRaspberryPi: true, MachineID: pi.MachineID}, "cam-" + AppSpecificMachineID(pi.MachineID), ""},
		{"serial when no machine id", "x.", Board{Serial: "1234"}, "x.1234", ""},
		{"nothing to go on", "cam-", Board{}, "", "no serial number and no /etc/machine-id"},
		{"bad prefix", "cam/", pi, "", "cam/"},
		{"too long", strings.Repeat("p", 40), Board{MachineID: pi.MachineID}, "", "max 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DeviceID(tt.prefix, tt.board)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DeviceID = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("DeviceID = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// The derived id must be the one systemd derives, so an operator can
// compute a device's id on the device with systemd-id128.
func TestAppSpecificMachineIDMatchesSystemd(t *testing.T) {
	exe, err := exec.LookPath("systemd-id128")
	if err != nil {
		t.Fatal("systemd-id128 not found: install Debian's systemd package (make test-deps)")
	}
	mid, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		t.Fatalf("this test needs the machine id: %v", err)
	}
	out, err := exec.Command(exe, "machine-id", "--app-specific=5f930787da6a4441b9f4347bd31d185f").Output()
	if err != nil {
		t.Fatalf("systemd-id128: %v", err)
	}
	want := strings.TrimSpace(string(out))
	if got := AppSpecificMachineID(strings.TrimSpace(string(mid))); got != want || len(got) != 32 {
		t.Fatalf("AppSpecificMachineID = %q, systemd-id128 says %q", got, want)
	}
	if got := AppSpecificMachineID(strings.TrimSpace(string(mid))); strings.Contains(got, strings.TrimSpace(string(mid))) {
		t.Fatal("derived id contains the machine id")
	}
}

func TestBoardString(t *testing.T) {
	b := Board{IsRaspberryPi: true, Model: "Raspberry Pi Zero W Rev 1.1", Serial: "00000000abcdef12", MachineID: "secret-ish"}
	s := b.String()
	for _, want := range []string{"raspberry-pi", `model="Raspberry Pi Zero W Rev 1.1"`, `serial="00000000abcdef12"`} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %s, missing %s", s, want)
		}
	}
	if strings.Contains(s, "secret-ish") {
		t.Errorf("String() = %s shows the machine id, which systemd asks not to expose", s)
	}
}
