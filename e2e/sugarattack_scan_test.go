package e2e

import (
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// saGate is a UDP relay between a laptop and the daemon. While gated it
// drops the laptop's packets (QUIC sends them again), creates the file
// marker at the first one, and opens once the file release exists: a
// laptop's run is held between its scan of the Journal and its first word
// to the server, as a wait for the server (a slow network, a queue) holds
// it.
type saGate struct {
	pc              net.PacketConn
	up              *net.UDPAddr
	gated           atomic.Bool
	marker, release string
	mu              sync.Mutex
	peers           map[string]*net.UDPConn
}

func newSAGate(t *testing.T, upstream, marker, release string) *saGate {
	t.Helper()
	up, err := net.ResolveUDPAddr("udp", upstream)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &saGate{pc: pc, up: up, marker: marker, release: release, peers: map[string]*net.UDPConn{}}
	t.Cleanup(func() {
		pc.Close()
		g.mu.Lock()
		for _, c := range g.peers {
			c.Close()
		}
		g.mu.Unlock()
	})
	go g.serve()
	return g
}

func (g *saGate) Addr() string { return g.pc.LocalAddr().String() }

func (g *saGate) serve() {
	buf := make([]byte, 65536)
	for {
		n, from, err := g.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if g.gated.Load() {
			if _, err := os.Stat(g.release); err == nil {
				g.gated.Store(false)
			} else {
				if _, err := os.Stat(g.marker); err != nil {
					os.WriteFile(g.marker, nil, 0o644)
				}
				continue
			}
		}
		g.mu.Lock()
		c := g.peers[from.String()]
		if c == nil {
			if c, err = net.DialUDP("udp", nil, g.up); err != nil {
				g.mu.Unlock()
				continue
			}
			g.peers[from.String()] = c
			go func(c *net.UDPConn, to net.Addr) {
				b := make([]byte, 65536)
				for {
					n, err := c.Read(b)
					if err != nil {
						return
					}
					g.pc.WriteTo(b[:n], to)
				}
			}(c, from)
		}
		g.mu.Unlock()
		c.Write(buf[:n])
	}
}

// TestSugarAttackSaveBetweenScanAndWalk: the timer's backup weighs the
// Journal (a walk with an lstat per file) before it asks the school
// server for a place, and then backs up from that walk's lstats. A child
// renamed an entry in the Journal after the last backup (Sugar rewrites
// only its metadata), and her activity autosaves the entry (a new title
// and a new document) while the laptop waits for the server. Expected:
// the snapshot holds the entry as one save left it (the autosave's title
// with the autosave's document, or the rename's title with the old
// document), never the autosave's title over the document from before
// the rename, which the child then opens from the Journal by a title it
// never had with that content.
func TestSugarAttackSaveBetweenScanAndWalk(t *testing.T) {
	w := newSAWorld(t, "SHCSA002")
	marker, release := filepath.Join(w.root, "held"), filepath.Join(w.root, "release")
	gate := newSAGate(t, w.d.Addr, marker, release)
	// The laptop talks to the server through the gate.
	w.state = filepath.Join(w.root, "state2")
	if out, errOut, code := xo(t, w.state, "register", "--server", gate.Addr(), "--serial", "SHCSA002B", "--nickname", "kid"); code != 0 {
		t.Fatalf("register: %s %s", out, errOut)
	}
	tmp := filepath.Join(w.root, "docs")
	os.MkdirAll(tmp, 0o755)
	spec := func(name, body string) string {
		p := filepath.Join(w.root, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var uids []string
	saJSONLine(t, sugarSession(t, w.home, w.drv, `$PY $DRV save `+tmp+` `+spec("v1.json",
		`[{"props": {"title": "Cuento", "mime_type": "text/plain", "activity": "org.laptop.AbiWordActivity", "description": "v1"}, "data": "había una vez (version 1)\n"},
		  {"props": {"title": "Dibujo", "mime_type": "text/plain", "activity": "org.laptop.Oficina"}, "data": "un dibujo\n"}]`)), &uids)
	uid := uids[0]
	time.Sleep(100 * time.Millisecond) // older than a tick of the clock: the backup caches what it reads
	runBackup(t, w.state, w.journal)

	// The child renames the entry in the Journal's detail view: metadata only.
	sugarSession(t, w.home, w.drv, `$PY $DRV save `+tmp+` `+spec("v2.json",
		`[{"uid": "`+uid+`", "props": {"title": "Cuento del río", "mime_type": "text/plain", "activity": "org.laptop.AbiWordActivity", "description": "v2"}}]`))

	// The next backup is held after its scan; meanwhile the activity saves.
	gate.gated.Store(true)
	runOut := filepath.Join(w.root, "run.out")
	sugarSession(t, w.home, w.drv, bin+`/xo-backup --state `+w.state+` run --force --json --source "$SUGAR_HOME/default/datastore" >`+runOut+` 2>&1 & b=$!
for i in $(seq 200); do [ -e `+marker+` ] && break; sleep 0.05; done
[ -e `+marker+` ] || { echo "the run never reached the server"; exit 1; }
$PY $DRV save `+tmp+` `+spec("v3.json",
		`[{"uid": "`+uid+`", "props": {"title": "Cuento final", "mime_type": "text/plain", "activity": "org.laptop.AbiWordActivity", "description": "v3"}, "data": "había una vez, y colorín colorado (version 3)\n"}]`)+`
touch `+release+`
wait $b || { cat `+runOut+`; exit 1; }`)

	home := filepath.Join(w.root, "restored")
	if out, errOut, code := xo(t, w.state, "restore", "--all", "--journal", filepath.Join(home, "default", "datastore")); code != 0 {
		t.Fatalf("restore --all: %s %s", out, errOut)
	}
	got := sugarDump(t, home, w.drv)
	g, ok := got[uid]
	if !ok {
		t.Fatalf("the restored Journal lacks %s: %v", uid, got)
	}
	sum := func(s string) string { return saSHA(s) }
	v1, v3 := sum("había una vez (version 1)\n"), sum("había una vez, y colorín colorado (version 3)\n")
	switch {
	case g["title"] == "Cuento final" && g["data"] == v3 && g["description"] == "v3":
	case g["title"] == "Cuento del río" && g["data"] == v1 && g["description"] == "v2":
	case g["data"] == v1:
		t.Errorf("the snapshot holds %q (description %q) over the document from before the rename (version 1): one save's title over another's document", g["title"], g["description"])
	default:
		t.Errorf("the snapshot holds title %q, description %q, document %.12s: no save left the entry so", g["title"], g["description"], g["data"])
	}
}
