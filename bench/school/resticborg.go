package school

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// restic: one repository shared by the whole school (restic deduplicates
// across the hosts of a repository), one cache directory per laptop.
type restic struct {
	bin, repo, caches string
	before            map[string]int64 // repository files and sizes at the start of the night
}

const benchPassword = "school-benchmark"

func (r *restic) name() string { return "restic" }

func (r *restic) env(cache string) []string {
	return []string{"RESTIC_PASSWORD=" + benchPassword, "RESTIC_CACHE_DIR=" + cache, "RESTIC_PROGRESS_FPS=0.1"}
}

func (r *restic) cache(l *laptop) string { return filepath.Join(r.caches, l.name) }

func (r *restic) start(ctx context.Context, _ *school, work string) error {
	r.repo, r.caches = filepath.Join(work, "repo"), filepath.Join(work, "cache")
	p, err := run(ctx, "", r.env(filepath.Join(work, "init-cache")), r.bin, "-r", r.repo, "init", "--repository-version", "2")
	if err != nil {
		return err
	}
	if p.code != 0 {
		return p.failed("restic init")
	}
	return os.RemoveAll(filepath.Join(work, "init-cache"))
}

func (r *restic) backup(ctx context.Context, l *laptop, k int) (int64, time.Duration, error) {
	args := []string{"-r", r.repo, "backup", "--json", "--host", l.name}
	for _, n := range excludeNames {
		args = append(args, "--exclude", filepath.Join(l.journal, n))
	}
	args = append(args, "--exclude", "*.tmp", "--exclude", ".tmp*", "--exclude", "*~", l.journal)
	p, err := run(ctx, "", r.env(r.cache(l)), r.bin, args...)
	if err != nil {
		return 0, 0, err
	}
	if p.code != 0 || !strings.Contains(p.stdout, `"message_type":"summary"`) {
		return 0, 0, p.failed(fmt.Sprintf("restic backup %s night %d", l.name, k))
	}
	return 0, p.cpu, nil // bytes are counted for the whole night: see nightWire
}

// repoFiles lists the repository's files and sizes.
func repoFiles(root string) (map[string]int64, error) {
	m := map[string]int64{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if de.Type().IsRegular() {
			if fi, err := de.Info(); err == nil {
				m[p] = fi.Size()
			}
		}
		return nil
	})
	return m, err
}

func (r *restic) beginNight() error {
	var err error
	r.before, err = repoFiles(r.repo)
	return err
}

// nightWire is what the night's backups added to the repository (new files
// and growth; restic never rewrites a file), i.e. what a remote repository
// would have received, after restic's compression and encryption.
func (r *restic) nightWire() (int64, error) {
	after, err := repoFiles(r.repo)
	if err != nil {
		return 0, err
	}
	var n int64
	for p, sz := range after {
		if d := sz - r.before[p]; d > 0 {
			n += d
		}
	}
	return n, nil
}

func (r *restic) serverCPU() time.Duration       { return 0 }
func (r *restic) disk() (int64, error)           { return diskUsage(r.repo) }
func (r *restic) state(l *laptop) (int64, error) { return diskUsage(r.cache(l)) }

func (r *restic) reflash(_ context.Context, l *laptop) error { return os.RemoveAll(r.cache(l)) }

func (r *restic) restoreWhole(ctx context.Context, l *laptop, dir string) (string, time.Duration, error) {
	p, err := run(ctx, "", r.env(r.cache(l)), r.bin, "-r", r.repo, "restore", "latest", "--host", l.name, "--target", dir)
	if err != nil {
		return "", 0, err
	}
	if p.code != 0 {
		return "", 0, p.failed("restic restore latest")
	}
	return filepath.Join(dir, l.journal), p.wall, nil
}

func (r *restic) restoreDoc(ctx context.Context, l *laptop, rel, dir string) (string, time.Duration, error) {
	p, err := run(ctx, "", r.env(r.cache(l)), r.bin, "-r", r.repo, "snapshots", "--json", "--host", l.name)
	if err != nil {
		return "", 0, err
	}
	var sns []struct {
		ID   string    `json:"id"`
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal([]byte(p.stdout), &sns); err != nil || len(sns) == 0 {
		return "", 0, fmt.Errorf("restic snapshots --json: exit %d: %v %s", p.code, err, p.stderr)
	}
	slices.SortFunc(sns, func(a, b struct {
		ID   string    `json:"id"`
		Time time.Time `json:"time"`
	}) int {
		return a.Time.Compare(b.Time)
	})
	path := filepath.Join(l.journal, filepath.FromSlash(rel))
	p, err = run(ctx, "", r.env(r.cache(l)), r.bin, "-r", r.repo, "restore", sns[0].ID, "--target", dir, "--include", path)
	if err != nil {
		return "", 0, err
	}
	if p.code != 0 {
		return "", 0, p.failed("restic restore " + sns[0].ID)
	}
	return filepath.Join(dir, path), p.wall, nil
}

func (r *restic) stop() error { return nil }

// borg: one repository per laptop (concurrent clients cannot share one),
// repokey-blake2 encryption, zstd level 3; BORG_BASE_DIR per laptop is the
// client's state (its chunk cache, files cache and security data).
type borg struct {
	bin, repos, bases string
	nights            int
}

func (b *borg) name() string { return "borg" }

func (b *borg) repo(l *laptop) string { return filepath.Join(b.repos, l.name) }
func (b *borg) base(l *laptop) string { return filepath.Join(b.bases, l.name) }

func (b *borg) env(l *laptop) []string {
	return []string{"BORG_PASSPHRASE=" + benchPassword, "BORG_BASE_DIR=" + b.base(l),
		"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes", "BORG_RELOCATED_REPO_ACCESS_IS_OK=yes"}
}

func (b *borg) start(ctx context.Context, sc *school, work string) error {
	b.repos, b.bases = filepath.Join(work, "repos"), filepath.Join(work, "base")
	b.nights = sc.o.Nights
	if err := os.MkdirAll(b.repos, 0o755); err != nil {
		return err
	}
	return forEach(ctx, len(sc.laptops), 2, func(i int) error {
		l := sc.laptops[i]
		p, err := run(ctx, "", b.env(l), b.bin, "init", "--encryption=repokey-blake2", b.repo(l))
		if err != nil {
			return err
		}
		if p.code != 0 {
			return p.failed("borg init " + b.repo(l))
		}
		return nil
	})
}

func (b *borg) backup(ctx context.Context, l *laptop, k int) (int64, time.Duration, error) {
	args := []string{"create", "--json", "--compression", "zstd,3"}
	for _, n := range excludeNames {
		args = append(args, "--exclude", filepath.Join(l.journal, n))
	}
	args = append(args, "--exclude", "sh:**/*.tmp", "--exclude", "sh:**/.tmp*", "--exclude", "sh:**/*~",
		b.repo(l)+"::"+nightDir(k), l.journal)
	p, err := run(ctx, "", b.env(l), b.bin, args...)
	if err != nil {
		return 0, 0, err
	}
	if p.code != 0 {
		return 0, 0, p.failed(fmt.Sprintf("borg create %s night %d", l.name, k))
	}
	var out struct {
		Archive struct {
			Stats struct {
				Dedup int64 `json:"deduplicated_size"`
			} `json:"stats"`
		} `json:"archive"`
	}
	if err := json.Unmarshal([]byte(p.stdout), &out); err != nil {
		return 0, 0, fmt.Errorf("borg create --json for %s: %v", l.name, err)
	}
	return out.Archive.Stats.Dedup, p.cpu, nil
}

func (b *borg) serverCPU() time.Duration       { return 0 }
func (b *borg) disk() (int64, error)           { return diskUsage(b.repos) }
func (b *borg) state(l *laptop) (int64, error) { return diskUsage(b.base(l)) }

func (b *borg) reflash(_ context.Context, l *laptop) error { return os.RemoveAll(b.base(l)) }

func (b *borg) extract(ctx context.Context, l *laptop, archive, dir string, paths ...string) (time.Duration, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	p, err := run(ctx, dir, b.env(l), b.bin, append([]string{"extract", b.repo(l) + "::" + archive}, paths...)...)
	if err != nil {
		return 0, err
	}
	if p.code != 0 {
		return 0, p.failed("borg extract " + archive)
	}
	return p.wall, nil
}

func (b *borg) restoreWhole(ctx context.Context, l *laptop, dir string) (string, time.Duration, error) {
	d, err := b.extract(ctx, l, nightDir(b.nights-1), dir)
	return filepath.Join(dir, strings.TrimPrefix(l.journal, "/")), d, err
}

func (b *borg) restoreDoc(ctx context.Context, l *laptop, rel, dir string) (string, time.Duration, error) {
	path := strings.TrimPrefix(filepath.Join(l.journal, filepath.FromSlash(rel)), "/")
	d, err := b.extract(ctx, l, nightDir(0), dir, path)
	return filepath.Join(dir, path), d, err
}

func (b *borg) stop() error { return nil }
