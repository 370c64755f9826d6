package server_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/server"
)

func opsRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../..", path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// opsUnitValues returns every value of key= in a unit file.
func opsUnitValues(unit, key string) []string {
	var out []string
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), key+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// opsDsts returns the dst paths an nfpm configuration installs.
func opsDsts(yaml string) map[string]bool {
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*dst:\s*(\S+)`).FindAllStringSubmatch(yaml, -1) {
		out[m[1]] = true
	}
	return out
}

// The units and the packages agree: every binary a unit starts and every
// file:// document it names is installed by the package that ships the
// unit; the server unit reads the conffile the package installs (the
// daemon's and xs-admin's default path), runs as the user postinst makes,
// and its StateDirectory is the default data directory; the README's
// OLPC edit (data = "/library/xs-backup") loads and is writable under the
// unit's ProtectSystem=strict.
func TestOpsAttackUnitsMatchPackages(t *testing.T) {
	server_ := opsRead(t, "dist/systemd/xs-backupd.service")
	serverPkg := opsDsts(opsRead(t, "dist/nfpm/server.yaml"))
	laptopPkg := opsDsts(opsRead(t, "dist/nfpm/laptop.yaml"))
	for unit, pkg := range map[string]map[string]bool{
		"dist/systemd/xs-backupd.service": serverPkg,
		"dist/systemd/xo-backup@.service": laptopPkg,
	} {
		text := opsRead(t, unit)
		for _, exec := range opsUnitValues(text, "ExecStart") {
			bin := strings.Fields(exec)[0]
			if !pkg[bin] {
				t.Errorf("%s starts %s, which its package does not install", unit, bin)
			}
		}
		for _, doc := range opsUnitValues(text, "Documentation") {
			for _, d := range strings.Fields(doc) {
				if f, ok := strings.CutPrefix(d, "file://"); ok && !pkg[f] {
					t.Errorf("%s names %s, which its package does not install", unit, f)
				}
			}
		}
	}
	for _, name := range []string{"xs-backupd.service"} {
		if !serverPkg["/usr/lib/systemd/system/"+name] {
			t.Errorf("the server package does not install %s", name)
		}
	}
	for _, name := range []string{"xo-backup@.service", "xo-backup@.timer"} {
		if !laptopPkg["/usr/lib/systemd/system/"+name] {
			t.Errorf("the laptop package does not install %s", name)
		}
	}
	exec := opsUnitValues(server_, "ExecStart")[0]
	if !strings.Contains(exec, "--config "+server.DefaultConfigPath) || !serverPkg[server.DefaultConfigPath] {
		t.Errorf("the unit's configuration (%s) is not the packaged conffile %s", exec, server.DefaultConfigPath)
	}
	postinst := opsRead(t, "dist/nfpm/server/postinst")
	if u := opsUnitValues(server_, "User"); len(u) != 1 || !strings.Contains(postinst, "user="+u[0]) {
		t.Errorf("the unit runs as %v, not the user postinst makes", u)
	}
	def := server.DefaultConfig()
	if sd := opsUnitValues(server_, "StateDirectory"); len(sd) != 1 || "/var/lib/"+sd[0] != def.Data || !strings.Contains(postinst, "data="+def.Data) {
		t.Errorf("StateDirectory %v is not the default data directory %s", sd, def.Data)
	}
	// The README's OLPC edit of the shipped file.
	shipped := opsRead(t, "dist/xs-backup.toml")
	edited := strings.Replace(shipped, `data = "/var/lib/xs-backup"`, `data = "/library/xs-backup"`, 1)
	if edited == shipped {
		t.Fatal("the shipped configuration has no data line to edit")
	}
	p := filepath.Join(t.TempDir(), "xs-backup.toml")
	os.WriteFile(p, []byte(edited), 0o644)
	c, err := server.LoadConfig(p)
	if err != nil || c.Data != "/library/xs-backup" {
		t.Fatalf("the shipped file with data = \"/library/xs-backup\": %v %q", err, c.Data)
	}
	writable := false
	for _, v := range opsUnitValues(server_, "ReadWritePaths") {
		for _, f := range strings.Fields(v) {
			if strings.TrimPrefix(f, "-") == c.Data {
				writable = true
			}
		}
	}
	if !writable {
		t.Errorf("%s is not among the unit's ReadWritePaths", c.Data)
	}
}
