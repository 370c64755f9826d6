package school

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"
)

// Target is one of the figures xs-backup holds itself to in this benchmark.
type Target struct {
	// Name says what is compared, Bound the limit.
	Name, Bound string
	// Value is xs-backup's figure and the baseline's.
	Value string
	// Judged is false when a baseline is missing (its system skipped or
	// failed); Met is meaningful only when Judged.
	Judged, Met bool
	// Gap says by how much a target is missed (or the margin when met).
	Gap string
}

// Targets judges xs-backup against the targets of the benchmark.
func (r *Result) Targets() []Target {
	xs, rs, hl, ssh := r.System(XSBackup), r.System(Rsync), r.System(RsyncHardlink), r.System(RsyncSSH)
	ok := func(s *SystemResult) bool { return s != nil && s.Skipped == "" && s.Failed == "" && len(s.Nights) > 0 }
	// vsSSH is the same figure against ds-backup's own transport, for the
	// reader; the targets are judged against plain rsync.
	vsSSH := func(x int64, f func(*SystemResult) int64, unit func(int64) string) string {
		if !ok(ssh) || len(ssh.Nights) != len(xs.Nights) {
			return ""
		}
		return fmt.Sprintf("; rsync over SSH (ds-backup): %s, xs-backup %.2f× that", unit(f(ssh)), ratio(x, f(ssh)))
	}
	wallOf := func(s *SystemResult) int64 { w, _, _ := s.Totals(); return int64(w) }
	cpuOf := func(s *SystemResult) int64 { _, c, _ := s.Totals(); return int64(c) }
	wireOf := func(s *SystemResult) int64 { _, _, w := s.Totals(); return w }
	dur := func(n int64) string { return secs(time.Duration(n)) }
	var ts []Target
	if !ok(xs) {
		return nil
	}
	xw, xc, xwire := xs.Totals()
	// Nightly wall time.
	t := Target{Name: "Nightly wall time", Bound: "≤ rsync's, every night"}
	if ok(rs) && len(rs.Nights) == len(xs.Nights) {
		rw, rc, rwire := rs.Totals()
		worst, wk := 0.0, 0
		met := true
		for k := range xs.Nights {
			q := ratio(int64(xs.Nights[k].Wall), int64(rs.Nights[k].Wall))
			if q > worst {
				worst, wk = q, k
			}
			if xs.Nights[k].Wall > rs.Nights[k].Wall {
				met = false
			}
		}
		t.Judged, t.Met = true, met
		t.Value = fmt.Sprintf("total %s vs %s (%.2f×); worst night %d: %.2f×", secs(xw), secs(rw), ratio(int64(xw), int64(rw)), wk, worst) + vsSSH(int64(xw), wallOf, dur)
		t.Gap = gapText(worst, 1)
		ts = append(ts, t)

		t = Target{Name: "First night's wall time (every Journal new)", Bound: "≤ 1.5× rsync's", Judged: true}
		q := ratio(int64(xs.Nights[0].Wall), int64(rs.Nights[0].Wall))
		t.Met, t.Value, t.Gap = q <= 1.5, fmt.Sprintf("%s vs %s: %.2f×", secs(xs.Nights[0].Wall), secs(rs.Nights[0].Wall), q), gapText(q, 1.5)
		ts = append(ts, t)

		t = Target{Name: "Total CPU (clients + server)", Bound: "≤ rsync's", Judged: true}
		q = ratio(int64(xc), int64(rc))
		t.Met, t.Value, t.Gap = q <= 1, fmt.Sprintf("%s vs %s: %.2f×", secs(xc), secs(rc), q)+vsSSH(int64(xc), cpuOf, dur), gapText(q, 1)
		ts = append(ts, t)

		t = Target{Name: "One laptop's backup, p50 (all nights)", Bound: "≤ rsync's"}
		if xp, rp := xs.LaptopP50(0, -1), rs.LaptopP50(0, -1); xp > 0 && rp > 0 {
			q = ratio(int64(xp), int64(rp))
			t.Judged, t.Met, t.Gap = true, q <= 1, gapText(q, 1)
			t.Value = fmt.Sprintf("%s vs %s: %.2f×; night 0: %s vs %s; nights 1–%d: %s vs %s", secs3(xp), secs3(rp), q,
				secs3(xs.LaptopP50(0, 1)), secs3(rs.LaptopP50(0, 1)), len(xs.Nights)-1, secs3(xs.LaptopP50(1, -1)), secs3(rs.LaptopP50(1, -1)))
		}
		ts = append(ts, t)

		t = Target{Name: "Bytes on the wire (all nights)", Bound: "≤ rsync's", Judged: true}
		q = ratio(xwire, rwire)
		t.Met, t.Value, t.Gap = q <= 1, fmt.Sprintf("%s vs %s: %.3f×", mbs(xwire), mbs(rwire), q)+vsSSH(xwire, wireOf, mbs), gapText(q, 1)
		ts = append(ts, t)
	} else {
		ts = append(ts, t, Target{Name: "First night's wall time (every Journal new)", Bound: "≤ 1.5× rsync's"},
			Target{Name: "Total CPU (clients + server)", Bound: "≤ rsync's"}, Target{Name: "One laptop's backup, p50 (all nights)", Bound: "≤ rsync's"},
			Target{Name: "Bytes on the wire (all nights)", Bound: "≤ rsync's"})
	}
	// Server disk.
	t = Target{Name: "Server disk after the last night", Bound: "≤ 0.8× rsync with cross-user hardlinks, and below restic and borg"}
	if ok(hl) {
		xd := xs.LastDisk()
		q := ratio(xd, hl.LastDisk())
		parts := []string{fmt.Sprintf("%s vs %s with hardlinks: %.2f×", mbs(xd), mbs(hl.LastDisk()), q)}
		t.Judged, t.Met = true, q <= 0.8
		gap := q / 0.8
		for _, name := range []string{Restic, Borg} {
			if s := r.System(name); ok(s) {
				qq := ratio(xd, s.LastDisk())
				parts = append(parts, fmt.Sprintf("%s: %.2f×", name, qq))
				if qq >= 1 {
					t.Met = false
				}
				gap = math.Max(gap, qq)
			}
		}
		t.Value = strings.Join(parts, "; ")
		t.Gap = gapText(gap, 1)
	}
	ts = append(ts, t)
	// Client state.
	t = Target{Name: "Client state per laptop", Bound: "≤ 1 MB", Judged: true}
	t.Met = xs.StateMax <= 1e6
	t.Value = fmt.Sprintf("mean %.0f KB, max %.0f KB", float64(xs.StateMean)/1e3, float64(xs.StateMax)/1e3)
	t.Gap = gapText(float64(xs.StateMax)/1e6, 1)
	ts = append(ts, t)
	// Restores.
	t = Target{Name: "Whole-Journal restore", Bound: "≤ 1.5× rsync's (a pull from its daemon)"}
	if xs.RestoreWholeErr != "" {
		t.Judged, t.Value = true, "FAILED: "+xs.RestoreWholeErr
	} else if ok(rs) && rs.RestoreWholeErr == "" {
		q := ratio(int64(xs.RestoreWhole), int64(rs.RestoreWhole))
		t.Judged, t.Met = true, q <= 1.5
		t.Value, t.Gap = fmt.Sprintf("%s vs %s: %.2f×", secs3(xs.RestoreWhole), secs3(rs.RestoreWhole), q), gapText(q, 1.5)
		if ok(ssh) && ssh.RestoreWholeErr == "" {
			t.Value += fmt.Sprintf("; rsync over SSH (ds-backup): %s, xs-backup %.2f× that", secs3(ssh.RestoreWhole), ratio(int64(xs.RestoreWhole), int64(ssh.RestoreWhole)))
		}
	}
	ts = append(ts, t)
	t = Target{Name: "One document from night 0", Bound: "< 0.2 s", Judged: true}
	if xs.RestoreDocErr != "" {
		t.Value = "FAILED: " + xs.RestoreDocErr
	} else {
		t.Met = xs.RestoreDoc < 200*time.Millisecond
		t.Value, t.Gap = secs3(xs.RestoreDoc), gapText(xs.RestoreDoc.Seconds()/0.2, 1)
	}
	ts = append(ts, t)
	return ts
}

// gapText is how far value is from bound (bound 1 means a ratio limit).
func gapText(q, bound float64) string {
	if q <= bound {
		return fmt.Sprintf("margin %.0f%%", (1-q/bound)*100)
	}
	return fmt.Sprintf("missed by %.0f%%", (q/bound-1)*100)
}

func secs(d time.Duration) string  { return fmt.Sprintf("%.1f s", d.Seconds()) }
func secs3(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }
func mbs(n int64) string           { return fmt.Sprintf("%.1f MB", mb(n)) }

func xrs(a, b int64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

func status(s *SystemResult) string {
	switch {
	case s.Skipped != "":
		return "skipped: " + s.Skipped
	case s.Failed != "":
		return "FAILED: " + s.Failed
	}
	return ""
}

// headline is the totals table, every system against rsync.
func (r *Result) headline() string {
	var b strings.Builder
	rs := r.System(Rsync)
	var rw, rc time.Duration
	var rwire, rdisk int64
	var rrest time.Duration
	if rs != nil && rs.Failed == "" && rs.Skipped == "" {
		rw, rc, rwire = rs.Totals()
		rdisk, rrest = rs.LastDisk(), rs.RestoreWhole
	}
	b.WriteString("| system | wall, all nights | ×rsync | CPU, all nights | ×rsync | wire | ×rsync | server disk after last night | ×rsync | client state per laptop (mean / max) | whole-Journal restore | ×rsync | night-0 document restore |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Systems {
		if st := status(s); st != "" {
			fmt.Fprintf(&b, "| %s | %s | | | | | | | | | | | |\n", s.Name, st)
			continue
		}
		w, c, wire := s.Totals()
		whole, doc := secs3(s.RestoreWhole), secs3(s.RestoreDoc)
		if s.RestoreWholeErr != "" {
			whole = "FAILED"
		}
		if s.RestoreDocErr != "" {
			doc = "FAILED"
		}
		name := s.Name
		if s.Name == XSBackup {
			name = "**xs-backup**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f / %.0f KB | %s | %s | %s |\n", name,
			secs(w), xrs(int64(w), int64(rw)), secs(c), xrs(int64(c), int64(rc)), mbs(wire), xrs(wire, rwire),
			mbs(s.LastDisk()), xrs(s.LastDisk(), rdisk), float64(s.StateMean)/1e3, float64(s.StateMax)/1e3,
			whole, xrs(int64(s.RestoreWhole), int64(rrest)), doc)
	}
	return b.String()
}

func (r *Result) targetsTable() string {
	var b strings.Builder
	b.WriteString("| target | bound | xs-backup (vs baseline) | met? | gap |\n|---|---|---|---|---|\n")
	for _, t := range r.Targets() {
		met := "not judged (baseline missing)"
		if t.Judged {
			met = "**not met**"
			if t.Met {
				met = "met"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", t.Name, t.Bound, t.Value, met, t.Gap)
	}
	return b.String()
}

// params describes the school in one paragraph.
func (r *Result) params() string {
	o := r.Options
	s := fmt.Sprintf("%d laptops × %d nights, %d MiB per Journal on night 0, %d laptops backing up at once, seed %d.",
		o.Laptops, o.Nights, o.JournalMB, o.Concurrency, o.Seed)
	if r.ReflashNight >= 0 {
		s += fmt.Sprintf(" Laptop %s is reflashed on night %d (Journal wiped and rebuilt at ~3 MiB, client state deleted, registered again).", r.ReflashLaptop, r.ReflashNight)
	}
	return s
}

// Markdown is the full report: machine, command, parameters, the totals,
// the targets, the per-night tables and the chunk-size study.
func (r *Result) Markdown() string {
	var b strings.Builder
	o := r.Options
	fmt.Fprintf(&b, "# Whole-school benchmark (%s)\n\n", o.Size)
	fmt.Fprintf(&b, "**Date**: %s. **Run time**: %s.  \n", r.Start.UTC().Format("2006-01-02 15:04 UTC"), r.Duration.Round(time.Second))
	fmt.Fprintf(&b, "**Command**: `%s`  \n", o.Command)
	if r.Commit != "" {
		fmt.Fprintf(&b, "**xs-backup built from**: %s  \n", r.Commit)
	}
	fmt.Fprintf(&b, "**Machine**: %s\n\n", r.machineLine())
	fmt.Fprintf(&b, "**School**: %s\n\n", r.params())
	b.WriteString(dataDescription)
	fmt.Fprintf(&b, "\n![Server disk and bytes on the wire, night by night](school-%s.svg)\n\n", o.Size)
	b.WriteString("## Totals\n\n" + r.headline() + "\n")
	b.WriteString("## Targets (xs-backup)\n\n" + r.targetsTable() + "\n")
	b.WriteString("## Night by night\n\n")
	b.WriteString("| night | Journals (all laptops) | files | new or changed |\n|---:|---:|---:|---:|\n")
	for k, n := range r.Nights {
		fmt.Fprintf(&b, "| %d | %s | %d | %s |\n", k, mbs(n.Logical), n.Files, mbs(n.Changed))
	}
	b.WriteString("\n")
	for _, tab := range []struct {
		title string
		cell  func(NightStats) string
	}{
		{"Wall time (s)", func(n NightStats) string { return fmt.Sprintf("%.1f", n.Wall.Seconds()) }},
		{"CPU, clients + server (s; server share in brackets)", func(n NightStats) string {
			return fmt.Sprintf("%.1f (%.1f)", n.CPU.Seconds(), n.ServerCPU.Seconds())
		}},
		{"Bytes on the wire (MB)", func(n NightStats) string { return fmt.Sprintf("%.2f", mb(n.Wire)) }},
		{"Server disk after the night (MB)", func(n NightStats) string { return fmt.Sprintf("%.1f", mb(n.Disk)) }},
	} {
		fmt.Fprintf(&b, "**%s**\n\n| night |", tab.title)
		var cols []*SystemResult
		for _, s := range r.Systems {
			if len(s.Nights) > 0 {
				cols = append(cols, s)
				fmt.Fprintf(&b, " %s |", s.Name)
			}
		}
		b.WriteString("\n|---:|" + strings.Repeat("---:|", len(cols)) + "\n")
		for k := range r.Nights {
			fmt.Fprintf(&b, "| %d |", k)
			for _, s := range cols {
				if k < len(s.Nights) {
					fmt.Fprintf(&b, " %s |", tab.cell(s.Nights[k]))
				} else {
					b.WriteString(" – |")
				}
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	b.WriteString("**What the wire bytes count**\n\n")
	for _, s := range r.Systems {
		if s.WireNote != "" {
			fmt.Fprintf(&b, "- %s: %s\n", s.Name, s.WireNote)
		}
	}
	b.WriteString("\n")
	if len(r.Chunks) > 0 {
		b.WriteString("## Chunk-size study\n\n" + r.chunkTable() + "\n" + r.chunkVerdict() + "\n\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	for _, s := range r.Systems {
		for _, e := range []string{s.Failed, s.RestoreWholeErr, s.RestoreDocErr} {
			if e != "" {
				fmt.Fprintf(&b, "- **%s FAILED**: %s\n", s.Name, e)
			}
		}
	}
	return b.String()
}

const dataDescription = `**Data**: each Journal is a Sugar datastore in its real layout (` + "`XX/<uid>/data`" + ` and ` + "`metadata/<key>`" + `
files, ` + "`version`" + `, and an ` + "`index/`" + ` that is rewritten every night). Night 0: a few books and
activity bundles picked by popularity from a school-wide library of 20 (300 KiB–3 MiB books,
100 KiB–1.5 MiB .xo bundles, identical bytes on every laptop that has them), then photos and
recordings (incompressible, 200 KiB–3 MiB) and documents (compressible text, 2–60 KiB) until
the Journal reaches its size. Every later night, on every laptop: 0–2 new photos, 1–2 new
documents, 1–2 documents edited (a paragraph appended or a sentence rewritten), on a third of the
nights a few KB inserted in the middle of a large photo or recording, on a third an entry deleted,
on a fifth a new book or bundle downloaded, and the index rewritten. Every system leaves out the
same disposable files (` + "`index/`" + `, ` + "`index_updated`, `ds_clean`, `checksums`" + `, temp files: ` + "`backup.JournalExclude`" + `).
Systems run one after the other each night on the same Journals, 4 laptops at a time, all on one
machine over loopback; the Journals sit in the page cache for all of them. Restores are of laptop
L000 (never reflashed) and each is compared byte for byte with the generator's copy: the whole
latest Journal, and one document as it was on night 0 (it was edited on night 1); rsync's are
pulls from its daemon (rsync -a rsync://…), as a laptop would restore over the network.
`

func (r *Result) machineLine() string {
	m := r.Machine
	s := fmt.Sprintf("%s, %d cores, %s RAM, %s, %s, %s", m.CPU, m.Cores, m.RAM, m.Kernel, m.OS, m.Go)
	for _, t := range []string{Rsync, "hardlink", "ssh", Restic, Borg} {
		if v := m.Tools[t]; v != "" {
			s += "; " + v
		}
	}
	return s
}

func (r *Result) chunkTable() string {
	var b strings.Builder
	b.WriteString("Every file of every laptop on every night, cut with each parameter set (MinSize = average/4, MaxSize = average×8 capped at 8 MiB; 64 KiB is `chunk.DefaultParams`). " +
		"Stored = distinct chunks after pkg/chunk's zstd (`Codec.Compress`). Index = distinct chunks × ")
	if r.IndexPerBlob > 0 {
		fmt.Fprintf(&b, "%.0f bytes per blob, measured on %s.\n\n", r.IndexPerBlob, r.IndexBasis)
	} else {
		b.WriteString("(not measured).\n\n")
	}
	b.WriteString("| average chunk | dedup ratio (logical / unique) | unique | stored after zstd | distinct chunks | chunks per GiB | index | stored + index |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.Chunks {
		name := fmt.Sprintf("%d KiB", c.AverageKiB)
		if c.AverageKiB >= 1024 {
			name = fmt.Sprintf("%d MiB", c.AverageKiB/1024)
		}
		if c.AverageKiB == 64 {
			name = "**" + name + " (default)**"
		}
		fmt.Fprintf(&b, "| %s | %.2f | %s | %s | %d | %.0f | %s | %s |\n", name, c.Dedup(), mbs(c.Unique), mbs(c.Stored),
			c.Chunks, c.ChunksPerGiB(), mbs(c.IndexBytes), mbs(c.Stored+c.IndexBytes))
	}
	return b.String()
}

// chunkVerdict says whether the 64 KiB default is the best trade-off.
func (r *Result) chunkVerdict() string {
	var def, best, small, big ChunkRow
	for i, c := range r.Chunks {
		if c.AverageKiB == 64 {
			def = c
		}
		if i == 0 || c.Stored+c.IndexBytes < best.Stored+best.IndexBytes {
			best = c
		}
	}
	small, big = r.Chunks[0], r.Chunks[len(r.Chunks)-1]
	if def.Chunks == 0 {
		return ""
	}
	s := fmt.Sprintf("**Verdict**: at 64 KiB the store holds %s (stored + index); the smallest total is at %d KiB (%s). "+
		"16 KiB chunks would store %+.1f%% bytes with %.1f× the chunks (index entries, hash look-ups and per-chunk requests); "+
		"1 MiB chunks would store %+.1f%% with %.2f× the chunks.",
		mbs(def.Stored+def.IndexBytes), best.AverageKiB, mbs(best.Stored+best.IndexBytes),
		(ratio(small.Stored, def.Stored)-1)*100, ratio(small.Chunks, def.Chunks),
		(ratio(big.Stored, def.Stored)-1)*100, ratio(big.Chunks, def.Chunks))
	gain := ratio(def.Stored+def.IndexBytes, best.Stored+best.IndexBytes) - 1
	switch {
	case best.AverageKiB == 64:
		s += " The default is the best trade-off on this data."
	case best.AverageKiB < 64 && gain < 0.02:
		s += fmt.Sprintf(" The default is within %.1f%% of the smallest total with %.2f× fewer chunks than %d KiB, and larger averages lose more than they save in index: "+
			"64 KiB is the best trade-off on this data.", gain*100, ratio(best.Chunks, def.Chunks), best.AverageKiB)
	default:
		s += fmt.Sprintf(" On bytes alone %d KiB would save %.1f%% over the default", best.AverageKiB, gain*100)
		if best.AverageKiB < 64 {
			s += fmt.Sprintf(", at %.1f× the chunks per GiB", ratio(int64(best.ChunksPerGiB()), int64(def.ChunksPerGiB())))
		}
		s += "; whether that is worth it depends on the per-chunk costs (CPU, requests) the table does not price."
	}
	return s
}

// ReadmeSection is the text the benchmark keeps in bench/README.md between
// the school markers: the headline table and targets of this run.
func (r *Result) ReadmeSection() string {
	var b strings.Builder
	o := r.Options
	b.WriteString("## Whole school: xs-backup against rsync --link-dest (daemon and SSH), restic and borg (bench/school)\n\n")
	if o.Size == "full" {
		b.WriteString("`make bench-full` runs:\n\n")
	}
	fmt.Fprintf(&b, "    %s\n\n", o.Command)
	fmt.Fprintf(&b, "%s Full report, per-night tables and the chunk-size study: [results/school-%s.md](results/school-%s.md).\n\n", r.params(), o.Size, o.Size)
	fmt.Fprintf(&b, "**Machine**: %s. **Date**: %s. **Run time**: %s.", r.machineLine(), r.Start.UTC().Format("2006-01-02"), r.Duration.Round(time.Second))
	if r.Commit != "" {
		fmt.Fprintf(&b, " **xs-backup**: %s.", r.Commit)
	}
	b.WriteString("\n\n")
	b.WriteString(r.headline() + "\n")
	b.WriteString("rsync+hardlink is rsync followed each night by util-linux `hardlink` over the whole snapshot tree (files equal in content, mode, owner and time across laptops share one inode); its wall and CPU include that pass. ")
	b.WriteString("rsync is rsync's daemon over plain TCP, the cheapest rsync there is, and the targets are judged against it; rsync+ssh is what ds-backup actually ran: rsync over SSH (OpenSSH defaults) with the same --link-dest folders, its whole-Journal restore an rsync pull over SSH. ")
	b.WriteString("restic and borg write to local repositories: their wire figure is what they added to the repository, and they have no server process. ")
	b.WriteString("A whole-Journal restore's time is the median of three, each checked against the Journal.\n\n")
	b.WriteString(r.targetsTable() + "\n")
	fmt.Fprintf(&b, "![Server disk and bytes on the wire, night by night](results/school-%s.svg)\n", o.Size)
	return b.String()
}

// Markers delimit the benchmark's section of bench/README.md.
const (
	MarkerBegin = "<!-- school:begin -->"
	MarkerEnd   = "<!-- school:end -->"
)

// UpdateReadme replaces the text between the markers in the file at path.
func UpdateReadme(path, section string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, MarkerBegin), strings.Index(s, MarkerEnd)
	if i < 0 || j < i {
		return errors.New(path + " has no " + MarkerBegin + " ... " + MarkerEnd + " markers; add them where the section belongs")
	}
	s = s[:i+len(MarkerBegin)] + "\n" + section + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
