package school

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestTinySchool runs the whole pipeline on a tiny school with xs-backup and
// whichever of rsync, restic and borg are installed, and checks real figures.
func TestTinySchool(t *testing.T) {
	o := Options{Size: "test", Laptops: 3, Nights: 2, JournalMB: 3, Concurrency: 2, Seed: 7, Work: t.TempDir(), NoInstall: true}
	for _, s := range []string{Rsync, Restic, Borg} {
		if _, err := exec.LookPath(s); err == nil {
			o.Systems = append(o.Systems, s)
		} else {
			t.Logf("%s not installed: not compared", s)
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err == nil && len(o.Systems) > 0 && o.Systems[0] == Rsync {
		o.Systems = append(o.Systems, RsyncSSH)
	} else {
		t.Log("rsync or sshd not installed: rsync over SSH not compared")
	}
	if len(o.Systems) == 0 {
		o.Systems = []string{XSBackup}
	}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	xs := res.System(XSBackup)
	if !xs.OK() {
		t.Fatalf("xs-backup: %+v", xs)
	}
	if len(xs.Nights) != 2 || len(res.Nights) != 2 {
		t.Fatalf("nights: %d measured, %d generated", len(xs.Nights), len(res.Nights))
	}
	logical := res.Nights[0].Logical + res.Nights[1].Logical
	if d := xs.LastDisk(); d <= 0 || d >= logical {
		t.Errorf("xs-backup server disk %d, want below the %d bytes of both nights' Journals", d, logical)
	}
	if w0, w1 := xs.Nights[0].Wire, xs.Nights[1].Wire; w0 <= 0 || w1 >= w0 {
		t.Errorf("xs-backup wire: night 0 %d bytes, night 1 %d: the second night must send less", w0, w1)
	}
	if xs.RestoreWhole <= 0 || xs.RestoreDoc <= 0 || xs.StateMax <= 0 || xs.Nights[0].CPU <= 0 {
		t.Errorf("xs-backup figures missing: %+v", xs)
	}
	for k, n := range xs.Nights {
		if len(n.LaptopWall) != o.Laptops || slices.Min(n.LaptopWall) <= 0 {
			t.Errorf("night %d: laptops' backup times %v, want one positive time for each of %d laptops", k, n.LaptopWall, o.Laptops)
		}
	}
	if rs := res.System(Rsync); rs != nil && rs.OK() && !strings.Contains(res.Markdown(), "| One laptop's backup, p50 (all nights) | ≤ rsync's | ") {
		t.Errorf("no laptop p50 target in the report")
	}
	for _, s := range res.Systems {
		if s.Skipped == "" && !s.OK() {
			t.Errorf("%s failed: %s %s %s", s.Name, s.Failed, s.RestoreWholeErr, s.RestoreDocErr)
		}
	}
	if rs, hl := res.System(Rsync), res.System(RsyncHardlink); rs != nil && hl != nil && hl.Skipped == "" {
		if hl.LastDisk() > rs.LastDisk() {
			t.Errorf("cross-user hardlinks grew the rsync tree: %d > %d", hl.LastDisk(), rs.LastDisk())
		}
		if rs.Nights[1].Wire >= rs.Nights[0].Wire {
			t.Errorf("rsync --link-dest sent %d bytes on night 1, not less than night 0's %d", rs.Nights[1].Wire, rs.Nights[0].Wire)
		}
	}
	if rs, ssh := res.System(Rsync), res.System(RsyncSSH); rs != nil && ssh != nil && ssh.Skipped == "" {
		// The same rsync protocol inside SSH: a little more on the wire
		// (encryption, framing, key exchange), and the same folders on disk.
		if ssh.Nights[0].Wire <= rs.Nights[0].Wire || ssh.Nights[0].Wire > rs.Nights[0].Wire*11/10+1<<20 {
			t.Errorf("rsync over SSH sent %d bytes on night 0, rsync alone %d: want a little more", ssh.Nights[0].Wire, rs.Nights[0].Wire)
		}
		if ssh.Nights[1].Wire >= ssh.Nights[0].Wire {
			t.Errorf("rsync over SSH --link-dest sent %d bytes on night 1, not less than night 0's %d", ssh.Nights[1].Wire, ssh.Nights[0].Wire)
		}
		if d, want := ssh.LastDisk(), rs.Nights[len(rs.Nights)-1].Disk; d < want*9/10 || d > want*11/10 {
			t.Errorf("rsync over SSH tree takes %d bytes, rsync's %d", d, want)
		}
		if ssh.Nights[0].ServerCPU <= 0 || ssh.RestoreWhole <= 0 {
			t.Errorf("rsync over SSH figures missing: %+v", ssh)
		}
	}
	if len(res.Chunks) != 7 || res.Chunks[2].AverageKiB != 64 || res.Chunks[2].Dedup() <= 1 || res.IndexPerBlob <= 0 {
		t.Errorf("chunk study: %+v, index %.0f bytes per blob", res.Chunks, res.IndexPerBlob)
	}
	md, svg := res.Markdown(), res.SVG()
	if !strings.Contains(md, "## Targets") || !strings.Contains(md, "| **xs-backup** |") || !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "polyline") {
		t.Errorf("report incomplete:\n%s", md)
	}
	readme := filepath.Join(t.TempDir(), "README.md")
	os.WriteFile(readme, []byte("# B\n\n"+MarkerBegin+"\nold\n"+MarkerEnd+"\ntail\n"), 0o644)
	if err := UpdateReadme(readme, res.ReadmeSection()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(readme)
	if strings.Contains(string(b), "\nold\n") || !strings.Contains(string(b), "## Whole school") || !strings.HasSuffix(string(b), MarkerEnd+"\ntail\n") {
		t.Errorf("README section not replaced:\n%s", b)
	}
}
