package restore

import (
	"context"
	"errors"
	"path"
	"strings"

	"github.com/xs-backup/xs-backup/pkg/blob"
	"github.com/xs-backup/xs-backup/pkg/chunk"
	"github.com/xs-backup/xs-backup/pkg/manifest"
)

// IntactChecker answers whether paths of snapshots can be read back whole,
// by fetching and verifying every tree and chunk through a Source (not by
// trusting an index). It remembers each blob's verdict, so checking the
// same file in many snapshots reads its chunks once. Not safe for
// concurrent use.
type IntactChecker struct {
	src     Source
	verdict map[blob.Ref]bool
	trees   map[chunk.ID]*manifest.Tree // decoded, verified trees (bounded)
}

// NewIntactChecker returns a checker reading from src.
func NewIntactChecker(src Source) *IntactChecker {
	return &IntactChecker{src: src, verdict: map[blob.Ref]bool{}, trees: map[chunk.ID]*manifest.Tree{}}
}

// FindOlder returns the ID of the first of older (newest first) that holds
// every one of paths with all its data intact, or "" if none does. Only
// failures of the source itself (a cancelled ctx, a lost connection) are
// errors.
func (c *IntactChecker) FindOlder(ctx context.Context, older []OlderSnapshot, paths []string) (string, error) {
	for _, sn := range older {
		ok := true
		for _, p := range paths {
			good, err := c.Intact(ctx, sn.Root, p)
			if err != nil {
				return "", err
			}
			if !good {
				ok = false
				break
			}
		}
		if ok {
			return sn.ID, nil
		}
	}
	return "", nil
}

// Intact reports whether path p exists in the tree root and every tree and
// chunk under it reads back and verifies.
func (c *IntactChecker) Intact(ctx context.Context, root chunk.ID, p string) (bool, error) {
	p = strings.Trim(path.Clean("/"+p), "/")
	cur := manifest.Entry{Type: manifest.Dir, Subtree: root}
	if p != "" {
		for _, name := range strings.Split(p, "/") {
			if cur.Type != manifest.Dir {
				return false, nil
			}
			t, err := c.tree(ctx, cur.Subtree)
			if t == nil || err != nil {
				return false, err
			}
			var next *manifest.Entry
			for i := range t.Entries {
				if t.Entries[i].Name == name {
					next = &t.Entries[i]
					break
				}
			}
			if next == nil {
				return false, nil
			}
			cur = *next
		}
	}
	return c.entry(ctx, &cur, 0)
}

func (c *IntactChecker) entry(ctx context.Context, e *manifest.Entry, depth int) (bool, error) {
	switch e.Type {
	case manifest.File:
		for _, id := range e.Chunks {
			if ok, err := c.blob(ctx, blob.Ref{Type: blob.Chunk, ID: id}, nil); !ok || err != nil {
				return false, err
			}
		}
	case manifest.Dir:
		if depth > manifest.MaxDepth {
			return false, nil
		}
		t, err := c.tree(ctx, e.Subtree)
		if t == nil || err != nil {
			return false, err
		}
		for i := range t.Entries {
			if ok, err := c.entry(ctx, &t.Entries[i], depth+1); !ok || err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// tree returns the verified, decoded tree id, or nil if it is damaged.
func (c *IntactChecker) tree(ctx context.Context, id chunk.ID) (*manifest.Tree, error) {
	if t, ok := c.trees[id]; ok {
		return t, nil
	}
	var t *manifest.Tree
	ok, err := c.blob(ctx, blob.Ref{Type: blob.Tree, ID: id}, func(raw []byte) bool {
		var derr error
		t, derr = manifest.Decode(raw)
		return derr == nil
	})
	if !ok || err != nil {
		return nil, err
	}
	if len(c.trees) >= maxCachedTrees {
		clear(c.trees)
	}
	c.trees[id] = t
	return t, nil
}

// blob fetches and verifies r once; use, if set, sees its bytes and may
// reject them.
func (c *IntactChecker) blob(ctx context.Context, r blob.Ref, use func([]byte) bool) (bool, error) {
	if ok, seen := c.verdict[r]; seen && (!ok || use == nil) {
		return ok, nil
	}
	good := false
	err := c.src.Fetch(ctx, []blob.Ref{r}, func(_ blob.Ref, raw []byte) error {
		good = chunk.Sum(raw) == r.ID && (use == nil || use(raw))
		return nil
	})
	if errors.Is(err, blob.ErrDamaged) {
		err, good = nil, false
	}
	if err != nil {
		return false, err
	}
	c.verdict[r] = good
	return good, nil
}
