package e2e

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// saDriver is sugarDriver with more of what Sugar does to its datastore,
// over the same D-Bus API:
//
//	seed N TMP             N entries saved as activities save (their file
//	                       handed over, transfer_ownership); prints one JSON
//	                       line {uid: {title, data, preview, description}}
//	churn TMP LOG STOP UID...  until the file STOP exists: updates the UIDs
//	                       in turn (as an activity's autosave: handed over;
//	                       every third as the Journal's copy: copied by the
//	                       datastore in 64 KiB steps), creates entries and
//	                       deletes the ones it created; every version it
//	                       saves is a JSON line in LOG
//	delete UID...          deletes entries as the Journal's erase does
//	save TMP SPEC          creates or updates entries from the JSON file
//	                       SPEC: [{uid?, props, data?, preview_size?}];
//	                       prints the uids, one JSON list, once the
//	                       datastore's optimizer has checked the documents
//	props UID              every property as the datastore gives it,
//	                       values as text (preview as its SHA-256)
const saDriver = sugarDriver + `
elif cmd in ('seed', 'churn', 'save'):
    import os
    def content(tag, size):
        line = (tag + ' ' + 'x' * 60 + '\n').encode()
        return (line * (size // len(line) + 1))[:size]
    def put(tmp, name, b):
        p = os.path.join(tmp, name)
        with open(p, 'wb') as f:
            f.write(b)
        return p
    def preview(tag):
        return b'\x89PNG\r\n\x1a\n' + (tag.encode() + bytes(range(256))) * 40
    if cmd == 'seed':
        n, tmp = int(sys.argv[2]), sys.argv[3]
        out = {}
        for i in range(n):
            title = 'Seed %d' % i
            data = content(title, 100000 + 7000 * i)
            pv = preview(title)
            props = {'title': title, 'mime_type': 'text/plain', 'activity': 'org.laptop.AbiWordActivity',
                     'description': 'desc ' + title, 'preview': dbus.ByteArray(pv)}
            uid = str(ds.create(props, put(tmp, 'seed-%d' % i, data), True, timeout=60))
            out[uid] = {'title': title, 'data': sha(data), 'preview': sha(pv), 'description': 'desc ' + title}
        print(json.dumps(out))
    elif cmd == 'churn':
        tmp, logp, stop, uids = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
        log = open(logp, 'a')
        def record(**kw):
            log.write(json.dumps(kw) + '\n')
            log.flush()
        created, i = [], 0
        while not os.path.exists(stop):
            i += 1
            r = i % 8
            if r == 7 and len(created) > 1:
                uid = created.pop(0)
                ds.delete(uid, timeout=60)
                record(op='delete', uid=uid)
            elif r == 6:
                title = 'New %d' % i
                data, pv = content(title, 90000 + 1000 * (i % 50)), preview(title)
                props = {'title': title, 'mime_type': 'text/plain', 'activity': 'org.laptop.AbiWordActivity',
                         'description': 'desc ' + title, 'preview': dbus.ByteArray(pv)}
                uid = str(ds.create(props, put(tmp, 'new-%d' % i, data), True, timeout=60))
                created.append(uid)
                record(op='save', uid=uid, title=title, data=sha(data), preview=sha(pv), description='desc ' + title)
            else:
                uid = uids[i % len(uids)]
                title = 'Doc %s v%d' % (uid[:4], i)
                # The sizes cross 64 KiB steps, and shrink as often as they grow.
                data, pv = content(title, 150000 + 37000 * (i % 5)), preview(title)
                props = {'title': title, 'mime_type': 'text/plain', 'activity': 'org.laptop.AbiWordActivity',
                         'description': 'desc ' + title, 'preview': dbus.ByteArray(pv)}
                record(op='save', uid=uid, title=title, data=sha(data), preview=sha(pv), description='desc ' + title)
                own = i % 3 != 0
                p = put(tmp, 'upd-%d' % i, data)
                ds.update(uid, props, p, own, timeout=60)
                if not own:
                    os.remove(p)
            time.sleep(0.002)
        print(json.dumps({'saves': i}))
    else:
        tmp, spec = sys.argv[2], json.load(open(sys.argv[3]))
        uids = []
        for k, e in enumerate(spec):
            props = {}
            for key, v in e['props'].items():
                if isinstance(v, list):  # raw bytes, as an activity may hand a ByteArray
                    props[key] = dbus.ByteArray(bytes(v))
                elif isinstance(v, int):
                    props[key] = dbus.Int32(v)
                else:
                    props[key] = v
            if e.get('preview_size'):
                props['preview'] = dbus.ByteArray((b'\x89PNG\r\n\x1a\n' + bytes(range(256)) * (e['preview_size'] // 256 + 1))[:e['preview_size']])
            path = put(tmp, 'save-%d' % k, e['data'].encode()) if 'data' in e else ''
            if e.get('uid'):
                ds.update(e['uid'], props, path, True, timeout=60)
                uids.append(e['uid'])
            else:
                uids.append(str(ds.create(props, path, True, timeout=60)))
        # Until the datastore's optimizer has checked every new document
        # for duplicates (it hard-links identical ones).
        queue = os.path.join(os.environ['SUGAR_HOME'], 'default', 'datastore', 'checksums', 'queue')
        for _ in range(100):
            if not os.listdir(queue):
                break
            time.sleep(0.05)
        print(json.dumps(uids))
elif cmd == 'delete':
    indexed()
    for uid in sys.argv[2:]:
        ds.delete(uid, timeout=60)
elif cmd == 'props':
    indexed()
    p = ds.get_properties(sys.argv[2], timeout=60)
    out = {}
    for k, v in p.items():
        out[str(k)] = sha(v) if k == 'preview' else str(v)
    print(json.dumps(out))
`

// saWorld is one laptop with Sugar's datastore under home, registered
// with a running daemon.
type saWorld struct {
	root, home, journal, drv, state string
	d                               *Daemon
}

func newSAWorld(t *testing.T, serial string) *saWorld {
	t.Helper()
	needSugar(t)
	root := t.TempDir()
	w := &saWorld{root: root, home: filepath.Join(root, "sugar"), drv: filepath.Join(root, "drv.py"), state: filepath.Join(root, "state")}
	w.journal = filepath.Join(w.home, "default", "datastore")
	if err := os.WriteFile(w.drv, []byte(saDriver), 0o644); err != nil {
		t.Fatal(err)
	}
	w.d = StartDaemon(t, t.TempDir())
	if out, errOut, code := xo(t, w.state, "register", "--server", w.d.Addr, "--serial", serial, "--nickname", "kid"); code != 0 {
		t.Fatalf("register: %s %s", out, errOut)
	}
	return w
}

// saJSONLine decodes the first line of out that starts with { or [.
func saJSONLine(t *testing.T, out string, v any) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{") || strings.HasPrefix(line, "[") {
			if err := json.Unmarshal([]byte(line), v); err != nil {
				t.Fatalf("driver printed %q: %v", line, err)
			}
			return
		}
	}
	t.Fatalf("the driver printed no JSON:\n%s", out)
}

// saQuote quotes s for sh.
func saQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// saProps is every property the datastore gives for uid, in a session of
// its own.
func saProps(t *testing.T, home, drv, uid string) map[string]string {
	t.Helper()
	var m map[string]string
	saJSONLine(t, sugarSession(t, home, drv, `$PY $DRV props `+uid), &m)
	return m
}

// saSnapshots lists the laptop's snapshot IDs, oldest first.
func saSnapshots(t *testing.T, state string) []string {
	t.Helper()
	out, errOut, code := xo(t, state, "list", "--json")
	var sns []struct {
		ID string `json:"id"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &sns) != nil {
		t.Fatalf("xo-backup list: %d %s %s", code, out, errOut)
	}
	var ids []string
	for _, s := range sns {
		ids = append(ids, s.ID)
	}
	return ids
}

// saSHA is the hex SHA-256 of s, as the driver prints a document's.
func saSHA(s string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(s))) }
