package agent

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/xs-backup/xs-backup/pkg/proto"
)

// DefaultLinkLifetime is how long a restore link works.
const DefaultLinkLifetime = time.Hour

// ErrNoRestorePage: the server does not serve the students' restore page.
var ErrNoRestorePage = errors.New("the school server does not serve a restore page; ask staff to enable it ([restore_page] in xs-backup.toml)")

// RestoreLink returns a link to the students' restore page that shows this
// laptop's backups, signed with the laptop's key and valid for lifetime
// (DefaultLinkLifetime if 0; the server accepts at most a day).
func RestoreLink(ctx context.Context, st State, lifetime time.Duration) (string, time.Time, error) {
	if lifetime <= 0 {
		lifetime = DefaultLinkLifetime
	}
	lifetime = min(lifetime, proto.MaxLinkLifetime)
	c, reg, err := Dial(ctx, st, 0)
	if err != nil {
		return "", time.Time{}, err
	}
	defer c.Close()
	g, err := c.Hello(ctx, "info")
	if err != nil {
		return "", time.Time{}, err
	}
	base, err := PageBase(g.RestorePage, reg.Server)
	if err != nil {
		return "", time.Time{}, err
	}
	key, err := st.Key()
	if err != nil {
		return "", time.Time{}, err
	}
	// Expiry counts from the server's clock, so a laptop with a wrong
	// clock still makes a working link.
	exp := g.ServerTime.Add(lifetime).Truncate(time.Second)
	tok := proto.SignLink(key, proto.LinkClaims{Serial: g.Serial, Expires: exp})
	return base + "/r/" + tok + "/", exp, nil
}

// PageBase turns what the server announced (a URL, or ":PORT") and the
// address the laptop reaches it at into the page's base URL.
func PageBase(page, serverAddr string) (string, error) {
	if page == "" {
		return "", ErrNoRestorePage
	}
	if strings.HasPrefix(page, ":") {
		host, _, err := net.SplitHostPort(serverAddr)
		if err != nil {
			host = serverAddr
		}
		return "http://" + net.JoinHostPort(host, page[1:]), nil
	}
	u, err := url.Parse(page)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", errors.New("the server announced a restore page address that is not a URL; ask staff to fix [restore_page] url")
	}
	return strings.TrimSuffix(page, "/"), nil
}
