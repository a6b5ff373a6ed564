// Package device knows the board the agent runs on: who it is (a
// Raspberry Pi's serial number, or the machine id elsewhere, from which
// the agent derives its device id when configured with `device_id: auto`)
// and how to show the agent's state on a status LED (a GPIO pin through
// periph.io, or a kernel LED under /sys/class/leds).
//
// Nothing here is needed for the agent to work: a board without a serial
// falls back to the machine id, and a board without the configured LED
// gets a LED that does nothing.
package device

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"periph.io/x/host/v3/distro"

	"agoratokens/wire"
)

// Board is what Detect found out about the machine.
type Board struct {
	// IsRaspberryPi is true on any Raspberry Pi (device tree or cpuinfo
	// model "Raspberry Pi …", or a BCM27xx/BCM2835 SoC).
	IsRaspberryPi bool
	// Model is the board's model, e.g. "Raspberry Pi Zero W Rev 1.1"; empty
	// when the kernel does not say (most x86 machines).
	Model string
	// Revision is the board revision code in hex, e.g. "9000c1".
	Revision string
	// Serial is the SoC serial number, lower-case hex; empty when unknown
	// or all zeros (as in containers and emulators).
	Serial string
	// MachineID is /etc/machine-id: 32 lower-case hex digits, or empty.
	MachineID string
	// OS is the distribution's PRETTY_NAME, when Detect ran on "/".
	OS string
}

// String is the one-line summary the agent logs at start.
func (b Board) String() string {
	kind := "generic"
	if b.IsRaspberryPi {
		kind = "raspberry-pi"
	}
	parts := []string{kind}
	for _, kv := range [][2]string{{"model", b.Model}, {"revision", b.Revision}, {"serial", b.Serial}, {"os", b.OS}} {
		if kv[1] != "" {
			parts = append(parts, fmt.Sprintf("%s=%q", kv[0], kv[1]))
		}
	}
	return strings.Join(parts, " ")
}

// Detect reads the board's identity from the files under root: "/" on a
// device, a fake tree in tests. Missing files leave fields empty; only a
// file that exists but cannot be read (or holds garbage where an id
// belongs) is an error.
func Detect(root string) (Board, error) {
	var b Board
	read := func(rel string) ([]byte, error) {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read board identity: %w", err)
		}
		return data, nil
	}

	cpuinfo, err := read("proc/cpuinfo")
	if err != nil {
		return Board{}, err
	}
	ci := parseCPUInfo(cpuinfo)

	dtModel, err := read("proc/device-tree/model")
	if err != nil {
		return Board{}, err
	}
	b.Model = nulTrim(dtModel)
	if b.Model == "" {
		b.Model = ci["Model"]
	}

	b.Revision = strings.ToLower(ci["Revision"])
	if b.Revision == "" {
		rev, err := read("proc/device-tree/system/linux,revision")
		if err != nil {
			return Board{}, err
		}
		if len(rev) >= 4 {
			b.Revision = fmt.Sprintf("%x", binary.BigEndian.Uint32(rev[:4]))
		}
	}

	serial := ci["Serial"]
	if serial == "" {
		dtSerial, err := read("proc/device-tree/serial-number")
		if err != nil {
			return Board{}, err
		}
		serial = nulTrim(dtSerial)
	}
	if b.Serial, err = normalizeSerial(serial); err != nil {
		return Board{}, err
	}

	machineID, err := read("etc/machine-id")
	if err != nil {
		return Board{}, err
	}
	if b.MachineID, err = normalizeMachineID(string(machineID)); err != nil {
		return Board{}, err
	}

	b.IsRaspberryPi = isRaspberryPi(b.Model, ci["Hardware"])
	if filepath.Clean(root) == "/" {
		// periph caches /etc/os-release for the life of the process, so
		// only the real root can use it.
		b.OS = distro.OSRelease()["PRETTY_NAME"]
	}
	return b, nil
}

// DeviceID is the device id for `device_id: auto`: prefix + the Pi's serial
// on a Raspberry Pi with a serial, prefix + AppSpecificMachineID
// elsewhere (never the machine id itself: systemd asks that it not be
// shown on a network). The result is checked against the wire rules
// (1–64 of A-Za-z0-9._-).
func DeviceID(prefix string, b Board) (string, error) {
	var id string
	switch {
	case b.IsRaspberryPi && b.Serial != "":
		id = prefix + b.Serial
	case b.MachineID != "":
		id = prefix + AppSpecificMachineID(b.MachineID)
	case b.Serial != "":
		id = prefix + b.Serial
	default:
		return "", errors.New("derive device id: board has no serial number and no /etc/machine-id; set device explicitly")
	}
	if err := wire.ValidateDeviceID(id); err != nil {
		return "", fmt.Errorf("derive device id with prefix %q: %w", prefix, err)
	}
	return id, nil
}

// appID is this application's id for deriving a machine-specific id, as
// `systemd-id128 machine-id --app-specific=5f930787da6a4441b9f4347bd31d185f`
// does. Changing it changes every derived device id.
var appID = [16]byte{0x5f, 0x93, 0x07, 0x87, 0xda, 0x6a, 0x44, 0x41, 0xb9, 0xf4, 0x34, 0x7b, 0xd3, 0x1d, 0x18, 0x5f}

// AppSpecificMachineID derives a stable id for this application from a
// machine id (32 hex digits) the way systemd's
// sd_id128_get_machine_app_specific does: HMAC-SHA256 keyed with the
// machine id over the application id, cut to 128 bits and marked as a
// version 4 UUID, in hex. The machine id cannot be recovered from it.
func AppSpecificMachineID(machineID string) string {
	key, err := hex.DecodeString(machineID)
	if err != nil || len(key) != 16 {
		return ""
	}
	m := hmac.New(sha256.New, key)
	m.Write(appID[:])
	sum := m.Sum(nil)[:16]
	sum[6] = sum[6]&0x0f | 0x40
	sum[8] = sum[8]&0x3f | 0x80
	return hex.EncodeToString(sum)
}

// parseCPUInfo returns the "key : value" lines of /proc/cpuinfo; for keys
// repeated per core the last value wins, which is fine for the board-wide
// keys read here.
func parseCPUInfo(data []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

// nulTrim turns a device-tree string property (NUL-terminated) into text.
func nulTrim(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\x00")
	return strings.TrimSpace(s)
}

func isRaspberryPi(model, hardware string) bool {
	if strings.HasPrefix(model, "Raspberry Pi") {
		return true
	}
	switch hardware {
	case "BCM2708", "BCM2709", "BCM2710", "BCM2711", "BCM2712", "BCM2835", "BCM2836", "BCM2837":
		return true
	}
	return false
}

// normalizeSerial lower-cases a hex serial; all zeros (QEMU, containers)
// counts as no serial.
func normalizeSerial(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || strings.Trim(s, "0") == "" {
		return "", nil
	}
	if len(s) > 32 || !isHex(s) {
		return "", fmt.Errorf("board serial number %q is not 1–32 hex digits", s)
	}
	return s, nil
}

// normalizeMachineID checks /etc/machine-id. An empty file or
// "uninitialized" (an image before first boot) counts as no id.
func normalizeMachineID(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "uninitialized" {
		return "", nil
	}
	if len(s) != 32 || !isHex(s) {
		return "", fmt.Errorf("/etc/machine-id holds %d bytes that are not 32 hex digits", len(s))
	}
	return strings.ToLower(s), nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
