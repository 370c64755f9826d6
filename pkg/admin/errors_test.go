package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// An error keeps its kind and its message through the admin socket's
// answer: xs-admin chooses the same message and exit code through the
// daemon as on a stopped store.
func TestErrorKindCrossesTheSocket(t *testing.T) {
	kinds := []error{store.ErrIndexDamaged, store.ErrStorageFull, store.ErrNotFound, ErrInvalid, store.ErrLocked, errkind.ErrPermission}
	for _, sent := range []error{
		fmt.Errorf("%w: open index: checksum mismatch", store.ErrIndexDamaged),
		fmt.Errorf("%w: the disk is full", store.ErrStorageFull),
		fmt.Errorf("open snapshot: %w", fmt.Errorf("%w: snapshot x", store.ErrNotFound)),
		fmt.Errorf("%w: no laptop serial given", ErrInvalid),
		errkind.Errorf(errkind.Locked, "rebuilding the index needs the store to itself"),
		errors.New("a plain failure"),
	} {
		b, _ := json.Marshal(errResponse(sent))
		var r response
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		got := r.err()
		for _, target := range kinds {
			if errors.Is(sent, target) != errors.Is(got, target) {
				t.Errorf("%q came back as %q: errors.Is(%v) changed", sent, got, target)
			}
		}
		if errkind.Of(got) != errkind.Of(sent) {
			t.Errorf("%q came back of kind %v, not %v", sent, errkind.Of(got), errkind.Of(sent))
		}
		if got.Error() != sent.Error() {
			t.Errorf("message %q came back as %q", sent, got)
		}
	}
}

// The socket decodes a request strictly into its op's own type: unknown
// ops, unknown or mistyped arguments, trailing data and oversized bodies
// are invalid requests, never half-read ones.
func TestDecodeRequestIsStrict(t *testing.T) {
	for _, good := range []string{
		`{"op":"users"}`,
		`{"op":"users","args":{}}`,
		`{"op":"gc","args":{"dry_run":true,"compact_below":0.3}}`,
		`{"op":"quota","args":{"serial":"SHC1","soft":1024}}`,
		` {"op":"retention","args":{"at":"2026-12-31T08:00:00Z"}} ` + "\n",
	} {
		if _, c, err := decodeRequest(strings.NewReader(good)); err != nil || c == nil {
			t.Errorf("%s: %v", good, err)
		}
	}
	for _, bad := range []string{
		``,
		`{"op":"format-disk"}`,
		`{"op":"gc","args":{"compact_below":"lots"}}`,
		`{"op":"gc","args":{"dry_run":true,"serial":"SHC1"}}`,
		`{"op":"users","cmd":"users"}`,
		`{"op":"users"} {"op":"gc"}`,
		`{"op":"users","args":[]}`,
		`{"op":"export","args":{}}`,
		`{"op":"users","args":{"pad":"` + strings.Repeat("x", MaxRequestBytes) + `"}}`,
	} {
		_, _, err := decodeRequest(strings.NewReader(bad))
		if k := errkind.Of(err); k != errkind.BadRequest && k != errkind.TooLarge {
			t.Errorf("%.60s: %v (kind %v), want an invalid or too large request", bad, err, k)
		}
	}
}

// FuzzDecodeRequest: whatever arrives on the admin socket, decoding never
// panics, and a request it accepts decodes the same once re-encoded.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"op":"users"}`,
		`{"op":"gc","args":{"dry_run":true,"compact_below":0.3,"expire_pending":true}}`,
		`{"op":"quota","args":{"serial":"SHC1","soft":1024,"hard":2048,"reset":false}}`,
		`{"op":"policy","args":{"serial":"SHC1","policy":{"keep_last":3}}}`,
		`{"op":"retention","args":{"serial":"SHC1","at":"2026-12-31T08:00:00Z","dry_run":true}}`,
		`{"op":"claim-code","args":{"serial":"SHC1","expires":604800000000000}}`,
		`{"op":"export","args":{"serial":"SHC1","titles":["a"]}}`,
		`{"op":"gc","args":{"compact_below":"x"}}`,
		`{"op":"users"} trailing`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := readRequest(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		h, ok := handlers[env.Op]
		if !ok {
			return
		}
		if _, err := h.decode(env.Args); err != nil {
			return
		}
		again, err := json.Marshal(env)
		if err != nil {
			t.Fatalf("re-encode %q: %v", b, err)
		}
		if len(again) > MaxRequestBytes {
			return // JSON escapes '<' as six bytes: a request under the cap may re-encode over it
		}
		if _, _, err := decodeRequest(strings.NewReader(string(again))); err != nil {
			t.Fatalf("%q was accepted, its re-encoding %q is not: %v", b, again, err)
		}
	})
}
