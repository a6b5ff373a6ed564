package device

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"

	// The GPIO drivers of Raspberry-Pi-class boards only: the Pi's SoC
	// (rpi, bcm283x), the kernel's GPIO character devices (every board,
	// the Pi 5 included) and the old sysfs interface. periph's host
	// package would add every board it knows (Allwinner, BeagleBone,
	// ODROID, …): 0.5 MiB more on armv6 for pins gpioioctl reaches too.
	_ "periph.io/x/host/v3/gpioioctl"
	_ "periph.io/x/host/v3/rpi"
	_ "periph.io/x/host/v3/sysfs"
)

// LEDConfig names the status LED: a GPIO pin or a kernel LED, or neither
// (no LED).
type LEDConfig struct {
	// GPIO is a pin name periph.io knows: "GPIO17", "17" or the header
	// position "P1_11" on a Raspberry Pi. The agent's user needs the gpio
	// group (the systemd drop-in led-gpio.conf adds it).
	GPIO string
	// Sysfs is a kernel LED directory such as /sys/class/leds/ACT (the
	// Pi's green activity LED). The agent sets its trigger to "none" while
	// it runs and restores the old trigger when it stops. The unit needs
	// write access to it (ReadWritePaths in the drop-in).
	Sysfs string
	// ActiveLow inverts the output, for an LED wired between the pin and
	// 3.3 V (or an inverted kernel LED such as the Pi Zero's).
	ActiveLow bool
	// Pin, when set, is used instead of looking GPIO up: for boards whose
	// pins periph does not name, and for tests (gpiotest.Pin).
	Pin gpio.PinIO
}

func (c LEDConfig) disabledReason() string {
	if c.GPIO == "" && c.Sysfs == "" && c.Pin == nil {
		return "no led configured"
	}
	return "configured led not present on this board"
}

// open returns the sink for the configured LED, nil for none (absent
// hardware is logged, not an error).
func (c LEDConfig) open(log *slog.Logger) (ledSink, error) {
	gpioSet := c.GPIO != "" || c.Pin != nil
	switch {
	case gpioSet && c.Sysfs != "":
		return nil, errBothLEDs
	case c.Pin != nil:
		return &gpioSink{pin: c.Pin, activeLow: c.ActiveLow}, nil
	case c.GPIO != "":
		if _, err := driverreg.Init(); err != nil {
			log.Warn("status LED: gpio drivers unavailable", "gpio", c.GPIO, "err", err)
			return nil, nil
		}
		p := gpioreg.ByName(c.GPIO)
		if p == nil {
			log.Warn("status LED: no such gpio pin on this board", "gpio", c.GPIO)
			return nil, nil
		}
		return &gpioSink{pin: p, activeLow: c.ActiveLow}, nil
	case c.Sysfs != "":
		if !filepath.IsAbs(c.Sysfs) {
			return nil, fmt.Errorf("led sysfs %q is not an absolute path", c.Sysfs)
		}
		s, err := openSysfsLED(c.Sysfs, c.ActiveLow)
		if errors.Is(err, fs.ErrNotExist) {
			log.Warn("status LED: no such kernel led", "sysfs", c.Sysfs)
			return nil, nil
		}
		if err != nil {
			log.Warn("status LED: cannot use kernel led", "sysfs", c.Sysfs, "err", err)
			return nil, nil
		}
		return s, nil
	}
	return nil, nil
}

type gpioSink struct {
	pin       gpio.PinIO
	activeLow bool
}

func (g *gpioSink) set(on bool) error {
	if err := g.pin.Out(gpio.Level(on != g.activeLow)); err != nil {
		return fmt.Errorf("gpio %s: %w", g.pin.Name(), err)
	}
	return nil
}

func (g *gpioSink) close() error { return nil }

func (g *gpioSink) String() string { return "gpio " + g.pin.Name() }

// sysfsLED is a kernel LED: <dir>/brightness, <dir>/max_brightness and
// <dir>/trigger.
type sysfsLED struct {
	dir        string
	activeLow  bool
	max        string // what "on" writes
	oldTrigger string // restored on close; "" or "none": nothing to restore
}

func openSysfsLED(dir string, activeLow bool) (*sysfsLED, error) {
	if _, err := os.Stat(filepath.Join(dir, "brightness")); err != nil {
		return nil, err
	}
	s := &sysfsLED{dir: dir, activeLow: activeLow, max: "1"}
	if b, err := os.ReadFile(filepath.Join(dir, "max_brightness")); err == nil {
		v := strings.TrimSpace(string(b))
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			s.max = v
		}
	}
	trig := filepath.Join(dir, "trigger")
	if b, err := os.ReadFile(trig); err == nil {
		s.oldTrigger = currentTrigger(string(b))
		if s.oldTrigger != "none" {
			if err := os.WriteFile(trig, []byte("none"), 0); err != nil {
				return nil, fmt.Errorf("set %s to none: %w", trig, err)
			}
		}
	}
	return s, nil
}

// currentTrigger reads the selected trigger from a sysfs trigger file:
// "none [mmc0] timer" → "mmc0".
func currentTrigger(s string) string {
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]")
		}
	}
	return ""
}

func (s *sysfsLED) set(on bool) error {
	v := "0"
	if on != s.activeLow {
		v = s.max
	}
	return os.WriteFile(filepath.Join(s.dir, "brightness"), []byte(v), 0)
}

func (s *sysfsLED) close() error {
	if s.oldTrigger == "" || s.oldTrigger == "none" {
		return nil
	}
	return os.WriteFile(filepath.Join(s.dir, "trigger"), []byte(s.oldTrigger), 0)
}

func (s *sysfsLED) String() string { return "sysfs " + s.dir }
