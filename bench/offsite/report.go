package offsite

import (
	"fmt"
	"strings"
	"time"
)

// WireTarget is the bound on a night's wire bytes against rsync's,
// DiskSlack the bound on two schools' disk against one school's plus the
// bytes unique to the second.
const (
	WireTarget = 0.5
	DiskSlack  = 0.05
)

// Totals sums the nights from first on.
func (r *Result) Totals(first int) (t Night) {
	for _, n := range r.Nights[min(first, len(r.Nights)):] {
		t.Logical += n.Logical
		t.XS.Wire += n.XS.Wire
		t.XS.Time += n.XS.Time
		t.XS.Dropped += n.XS.Dropped
		t.XSSent += n.XSSent
		t.XSSnapshots += n.XSSnapshots
		t.Store.Wire += n.Store.Wire
		t.Store.Time += n.Store.Time
		t.Tree.Wire += n.Tree.Wire
		t.Tree.Time += n.Tree.Time
	}
	return t
}

// WorstRatio is the highest nightly xs-backup/baseline wire ratio and its
// night; baseline picks the transfer.
func (r *Result) WorstRatio(baseline func(Night) Transfer) (float64, int) {
	worst, at := 0.0, -1
	for k, n := range r.Nights {
		if b := baseline(n).Wire; b > 0 {
			if x := float64(n.XS.Wire) / float64(b); x > worst {
				worst, at = x, k
			}
		}
	}
	return worst, at
}

// DiskBound is the most the mothership may hold for both schools.
func (r *Result) DiskBound() int64 {
	return int64(float64(r.OnePacks+r.Unique2) * (1 + DiskSlack))
}

func ratio(a, b int64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// Markdown is the report for bench/README.md.
func (r *Result) Markdown(command string) string {
	var b strings.Builder
	o := r.Options
	m := r.Machine
	fmt.Fprintf(&b, "    %s\n\n", command)
	fmt.Fprintf(&b, "**Scale**: %d laptops × %d nights, Journals of %d MiB on night 0, books, activity bundles and photos at 1/%d of the whole-school benchmark's sizes (documents at full size), seed %d (school 2: same library, children of seed %d). Laptop %s is reflashed on night %d.\n\n",
		o.Laptops, o.Nights, o.JournalMB, o.Scale, o.Seed, o.Seed2, r.ReflashLaptop, r.ReflashNight)
	if o.TargetDelay != 0 {
		fmt.Fprintf(&b, "**Mothership pacing**: target_delay %v (negative: off).\n\n", o.TargetDelay)
	}
	fmt.Fprintf(&b, "**Link**: %.0f Mbit/s shared by both directions, %v one way (+ up to %v of jitter), loss %.1f%%, drop-tail buffer of 100 ms.\n\n",
		o.Rate/1e6, o.Delay, o.Jitter, o.Loss*100)
	fmt.Fprintf(&b, "**Machine**: %s, %d cores, %s RAM, %s, %s, %s; %s; %s. **Date**: %s. **Run time**: %s.\n\n",
		m.CPU, m.Cores, m.RAM, m.Kernel, m.OS, m.Go, m.Tools["rsync"], m.Tools["hardlink"], r.Start.UTC().Format("2006-01-02"), r.Duration.Round(time.Second))

	b.WriteString("| night | Journals | xs-backup wire | time | rsync -aH store | time | rsync -aH folders | time | xs ÷ store | xs ÷ folders | mothership packs |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for k, n := range r.Nights {
		fmt.Fprintf(&b, "| %d | %.1f MB | %.2f MB | %s | %.2f MB | %s | %.2f MB | %s | %s | %s | %.1f MB |\n",
			k, mb(n.Logical), mb(n.XS.Wire), secs(n.XS.Time), mb(n.Store.Wire), secs(n.Store.Time), mb(n.Tree.Wire), secs(n.Tree.Time),
			ratio(n.XS.Wire, n.Store.Wire), ratio(n.XS.Wire, n.Tree.Wire), mb(n.MothershipPacks))
	}
	for _, row := range []struct {
		name  string
		first int
	}{{"all nights", 0}, {"nights 1–" + fmt.Sprint(len(r.Nights)-1), 1}} {
		t := r.Totals(row.first)
		fmt.Fprintf(&b, "| **%s** | | **%.2f MB** | **%s** | **%.2f MB** | **%s** | **%.2f MB** | **%s** | **%s** | **%s** | |\n",
			row.name, mb(t.XS.Wire), secs(t.XS.Time), mb(t.Store.Wire), secs(t.Store.Time), mb(t.Tree.Wire), secs(t.Tree.Time),
			ratio(t.XS.Wire, t.Store.Wire), ratio(t.XS.Wire, t.Tree.Wire))
	}
	all := r.Totals(0)
	last := r.Nights[len(r.Nights)-1]
	fmt.Fprintf(&b, "\nxs-backup's blobs (stored bytes the sync reported sending): %.2f MB in all, %d snapshots; its wire is %.1f%% more (QUIC and IP/UDP headers, acknowledgements, the questions, %d packets dropped by the link's buffer and sent again). After the last night: school server packs %.1f MB (its whole data directory %.1f MB), the hardlinked snapshot folders %.1f MB.\n\n",
		mb(all.XSSent), all.XSSnapshots, 100*(float64(all.XS.Wire)/float64(max(all.XSSent, 1))-1), all.XS.Dropped, mb(last.SchoolPacks), mb(last.SchoolDir), mb(last.TreeDisk))

	fmt.Fprintf(&b, "**Mothership disk** (pack bytes): school 1 alone %.2f MB; with school 2 %.2f MB. School 2's own store %.2f MB, of which %.2f MB are chunks school 1 holds too: %.2f MB unique to school 2 (it replicated all %d nights at once on loopback: %.2f MB of blobs sent, %s). One school + school 2's unique bytes = %.2f MB; the mothership holds %s of that (bound %.2f MB).\n\n",
		mb(r.OnePacks), mb(r.TwoPacks), mb(r.School2Packs), mb(r.Shared2), mb(r.Unique2), o.Nights, mb(r.School2Sent), secs(r.School2Time),
		mb(r.OnePacks+r.Unique2), ratio(r.TwoPacks, r.OnePacks+r.Unique2), mb(r.DiskBound()))
	fmt.Fprintf(&b, "Checked after the run: %s.\n\n", r.Verified)

	b.WriteString("| target | bound | measured | met? |\n|---|---|---|---|\n")
	for _, base := range []struct {
		name string
		get  func(Night) Transfer
	}{{"rsync -aH of the school's store", func(n Night) Transfer { return n.Store }}, {"rsync -aH of hardlinked --link-dest folders", func(n Night) Transfer { return n.Tree }}} {
		if o.NoBaselines {
			break
		}
		worst, at := r.WorstRatio(base.get)
		steady := 0.0
		for k, n := range r.Nights {
			if k > 0 && base.get(n).Wire > 0 {
				steady = max(steady, float64(n.XS.Wire)/float64(base.get(n).Wire))
			}
		}
		fmt.Fprintf(&b, "| Nightly wire vs %s | ≤ %.1f× every night | worst %.2f× (night %d); nights 1–%d at most %.2f× | %s |\n",
			base.name, WireTarget, worst, at, len(r.Nights)-1, steady, metStr(worst <= WireTarget))
	}
	fmt.Fprintf(&b, "| Mothership disk, two schools | ≤ %.0f%% over one school + the second's unique bytes | %.2f MB vs %.2f MB: %s | %s |\n",
		DiskSlack*100, mb(r.TwoPacks), mb(r.OnePacks+r.Unique2), ratio(r.TwoPacks, r.OnePacks+r.Unique2), metStr(r.TwoPacks <= r.DiskBound()))
	return b.String()
}

func metStr(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}
