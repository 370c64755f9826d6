package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// powerSupply is one /sys/class/power_supply entry: its attribute files.
type powerSupply map[string]string

// fakeSysfs lays supplies out as the kernel does: /sys/class/power_supply
// holds symlinks to the devices' directories.
func fakeSysfs(t *testing.T, supplies map[string]powerSupply) string {
	t.Helper()
	devices, class := t.TempDir(), t.TempDir()
	for name, attrs := range supplies {
		dev := filepath.Join(devices, name)
		if err := os.MkdirAll(dev, 0o755); err != nil {
			t.Fatal(err)
		}
		for k, v := range attrs {
			if err := os.WriteFile(filepath.Join(dev, k), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(dev, filepath.Join(class, name)); err != nil {
			t.Fatal(err)
		}
	}
	return class
}

// TestClockAttackBatteryOddValues: the battery check on the layouts an XO
// and other Sugar machines show, and on odd or missing values: it never
// fails, and skips only on a battery that is discharging below the
// threshold with no charger online.
func TestClockAttackBatteryOddValues(t *testing.T) {
	ac := func(online string) powerSupply { return powerSupply{"type": "Mains", "online": online} }
	bat := func(status, capacity string) powerSupply {
		p := powerSupply{"type": "Battery", "status": status}
		if capacity != "" {
			p["capacity"] = capacity
		}
		return p
	}
	for _, c := range []struct {
		name     string
		supplies map[string]powerSupply
		low      bool
	}{
		{"no power supplies (a desktop)", nil, false},
		{"XO on battery at 10%", map[string]powerSupply{"olpc-ac": ac("0"), "olpc-battery": bat("Discharging", "10")}, true},
		{"XO at 10% with the charger in", map[string]powerSupply{"olpc-ac": ac("1"), "olpc-battery": bat("Charging", "10")}, false},
		{"charger online, battery says discharging", map[string]powerSupply{"olpc-ac": ac("1"), "olpc-battery": bat("Discharging", "5")}, false},
		{"USB power online", map[string]powerSupply{"usb": {"type": "USB", "online": "1"}, "BAT0": bat("Discharging", "5")}, false},
		{"at the threshold", map[string]powerSupply{"BAT0": bat("Discharging", "20")}, false},
		{"just below it", map[string]powerSupply{"BAT0": bat("Discharging", "19")}, true},
		{"capacity missing", map[string]powerSupply{"BAT0": bat("Discharging", "")}, false},
		{"capacity not a number", map[string]powerSupply{"BAT0": bat("Discharging", "unknown")}, false},
		{"capacity above 100", map[string]powerSupply{"BAT0": bat("Discharging", "150")}, false},
		{"status Unknown", map[string]powerSupply{"BAT0": bat("Unknown", "5")}, false},
		{"status Full", map[string]powerSupply{"BAT0": bat("Full", "5")}, false},
		{"no type file", map[string]powerSupply{"BAT0": {"status": "Discharging", "capacity": "5"}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := OnLowBattery(fakeSysfs(t, c.supplies), 20); got != c.low {
				t.Fatalf("on low battery: %v, want %v", got, c.low)
			}
		})
	}
	if OnLowBattery(filepath.Join(t.TempDir(), "missing"), 20) {
		t.Fatal("a missing power_supply directory counts as low battery")
	}
}

// TestClockAttackBatteryOfAMouse: Sugar on a laptop (not only XOs: the
// brief's "Sugar runs on more than XOs") with a wireless mouse or keyboard.
// Linux lists the mouse's battery in /sys/class/power_supply too, with
// scope "Device" (hid-*-battery). A mouse at 5% makes the laptop, on
// battery at 90%, skip "on battery below 20%" on every run until the
// mouse's battery is changed.
func TestClockAttackBatteryOfAMouse(t *testing.T) {
	dir := fakeSysfs(t, map[string]powerSupply{
		"AC":   {"type": "Mains", "online": "0"},
		"BAT0": {"type": "Battery", "scope": "System", "status": "Discharging", "capacity": "90"},
		"hid-00:1f:20:aa:bb:cc-battery": {"type": "Battery", "scope": "Device", "status": "Discharging", "capacity": "5",
			"model_name": "Wireless Mouse"},
	})
	if OnLowBattery(dir, 20) {
		t.Fatal("the laptop's battery is at 90%, but a wireless mouse's battery at 5% counts as the laptop on low battery")
	}
}

// TestClockAttackBatteryTwoBatteries: a laptop with two batteries (a
// ThinkPad with its external battery, used by Sugar schools on other
// hardware) runs from one at a time: the one in use at 10% discharging,
// the other full and idle ("Unknown"). The laptop has over half its charge
// left, yet every run skips "on battery below 20%".
func TestClockAttackBatteryTwoBatteries(t *testing.T) {
	dir := fakeSysfs(t, map[string]powerSupply{
		"AC":   {"type": "Mains", "online": "0"},
		"BAT0": {"type": "Battery", "status": "Unknown", "capacity": "100", "energy_now": "23000000", "energy_full": "23000000"},
		"BAT1": {"type": "Battery", "status": "Discharging", "capacity": "10", "energy_now": "2300000", "energy_full": "23000000"},
	})
	if OnLowBattery(dir, 20) {
		t.Fatal("two batteries with 55% of their charge left together count as on battery below 20%")
	}
}
