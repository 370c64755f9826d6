package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// TestTrafficConfig: the [traffic] section reads rates in bits or bytes,
// a schedule must be well formed, and the settings admission no longer
// has are refused with what replaced them.
func TestTrafficConfig(t *testing.T) {
	for in, want := range map[string]int64{"5Mbit": 625000, "20Mbit/s": 2500000, "512kbit": 64000, "2MB": 2000000, "1MiB": 1 << 20, "": 0, "1000": 1000} {
		if got, err := server.ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	path := filepath.Join(t.TempDir(), "xs.toml")
	good := "[traffic]\ntarget_delay = \"50ms\"\nrate = \"20Mbit\"\n[[traffic.schedule]]\nfrom = \"08:00\"\nto = \"16:00\"\nrate = \"5Mbit\"\n"
	os.WriteFile(path, []byte(good), 0o644)
	c, err := server.LoadConfig(path)
	if err != nil || c.Traffic.Rate != 2500000 || len(c.Traffic.Schedule) != 1 {
		t.Fatalf("%+v %v", c.Traffic, err)
	}
	for bad, says := range map[string]string{
		"capacity = 4\n":                  "measured",
		"slot_length = \"2m\"\n":          "come back",
		"[traffic]\nrate = \"fast\"\n":    "not a rate",
		"[admission]\nmax_sessions = 1\n": "at least 2",
		"[[traffic.schedule]]\nfrom = \"8\"\nto = \"16:00\"\nrate = \"1Mbit\"\n": "times of day",
		"[[traffic.schedule]]\nfrom = \"08:00\"\nto = \"16:00\"\n":               "give the rate",
	} {
		os.WriteFile(path, []byte(bad), 0o644)
		_, err := server.LoadConfig(path)
		if err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("config %q: %v, want an error saying %q", bad, err, says)
		}
	}
}

// TestStatusShowsQueue: xs-admin status, through the admin socket, shows
// the sessions running, the limit and the waiting laptops by serial.
func TestStatusShowsQueue(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) { c.Admission.MaxSessions = 2 })
	for i := range 2 {
		dialLaptop(t, d, newLaptop(t, d, fmt.Sprintf("RUN%d", i), uint64(20+i)))
	}
	w := newLaptop(t, d, "WAITER", 30)
	key, _ := w.st.Key()
	c, err := proto.Dial(context.Background(), proto.ClientConfig{Addr: d.Addr.String(), Key: key, ServerKey: d.Server.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.HoldFor = 50 * time.Millisecond
	if g, err := c.Hello(context.Background(), "backup"); err != nil || g.Granted {
		t.Fatalf("a third laptop with two places taken: %+v %v", g, err)
	}
	ac, err := admin.Dial(filepath.Join(d.Config.Data, admin.DefaultSocket))
	if err != nil {
		t.Fatal(err)
	}
	st, err := ac.Status(context.Background(), admin.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Running != 2 || st.Limit != 2 || st.Waiting != 1 || len(st.Queue) != 1 || st.Serials[st.Queue[0].User] != "WAITER" || st.Queue[0].Present {
		t.Fatalf("status %+v", st)
	}
}
