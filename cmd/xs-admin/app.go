package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/xs-backup/xs-backup/internal/cli"
	"github.com/xs-backup/xs-backup/pkg/admin"
	"github.com/xs-backup/xs-backup/pkg/errkind"
	"github.com/xs-backup/xs-backup/pkg/server"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// defaultConfig is the daemon's configuration file, which xs-admin reads
// for the store and the admin socket.
const defaultConfig = server.DefaultConfigPath

// app is one run of xs-admin: its output, its global flags and where it
// found the daemon and the store.
type app struct {
	stdout, stderr io.Writer

	configPath string
	data       string
	socket     string
	jsonOut    bool

	// started is set when a command begins to run: errors before that
	// are cobra's usage errors.
	started bool
	// place is where the command looked, for advice on its errors.
	place cli.StaffPlace
	// stored is what the configuration says about the configured store
	// (retention, quota, lifecycle, [storage]: a store whose packs are in a
	// bucket is opened with the same Remote as the daemon's); with the
	// daemon stopped, xs-admin opens it with the daemon's options. Another
	// store (--data) is opened with the defaults.
	stored func(context.Context, *store.Options) error
	// storage is the configuration's [storage] section (empty for another
	// store).
	storage server.Storage
	// school and mothershipKey are the configuration's [mothership]
	// school and key.
	school, mothershipKey string
}

// access is how a command uses the store when the daemon is stopped.
type access int

const (
	readOnly  access = iota // reads only: a read-only open (several may share a stopped store)
	readWrite               // changes the store
	repair                  // rebuilds the index: store.OpenForRepair
	daemon                  // needs the running daemon (its queue, its restore page)
)

// command wraps a command's work: it marks the start (errors after it are
// not cobra's usage errors).
func (a *app) command(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.started = true
		return fn(cmd, args)
	}
}

// locate reads the daemon's configuration and works out the store
// directory and the admin socket as xs-backupd does: --data and --socket
// win over the file; the socket is admin_socket for the configured store,
// else admin.sock in the data directory. A missing file at the default path is not an error (the
// defaults apply), but a file named by --config or XS_BACKUP_CONFIG must
// exist.
func (a *app) locate(cmd *cobra.Command) error {
	path, named := a.configPath, cmd.Flags().Changed("config")
	if env := os.Getenv("XS_BACKUP_CONFIG"); !named && env != "" {
		path, named = env, true
	}
	cfg := server.DefaultConfig()
	if path != "" {
		_, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !named:
			// No configuration file: the defaults, as the daemon.
		case err != nil:
			return fmt.Errorf("configuration file: %w", err)
		default:
			if cfg, err = server.LoadConfig(path); err != nil {
				return err
			}
			a.place.Config = path
		}
	}
	a.place.Data = cfg.Data
	a.school, a.mothershipKey = cfg.Mothership.School, cfg.Mothership.Key
	a.stored, a.storage = func(context.Context, *store.Options) error { return nil }, server.Storage{}
	if !cmd.Flags().Changed("data") || sameDir(a.data, cfg.Data) {
		a.stored, a.storage = cfg.StoreOptions, cfg.Storage // another store (--data): the defaults, a local one
	}
	if cmd.Flags().Changed("data") {
		a.place.Data = a.data
	}
	// The configured socket is the daemon's of the configured store; for
	// another store (--data), that store's own: never a daemon serving a
	// store other than the one staff named.
	a.place.Socket = cfg.AdminSocket
	if a.place.Socket == "" || !sameDir(a.place.Data, cfg.Data) {
		a.place.Socket = filepath.Join(a.place.Data, admin.DefaultSocket)
	}
	if cmd.Flags().Changed("socket") {
		a.place.Socket = a.socket
	}
	return nil
}

// sameDir reports whether two paths name one directory: the same spelling,
// or (a relative path, a symbolic link) the same file.
func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// connect returns a client of the staff API: the daemon's, through its
// admin socket, or with the daemon stopped, one that runs on the store in
// this process. done releases what it opened.
func (a *app) connect(cmd *cobra.Command, how access) (c *admin.Client, done func(), err error) {
	if err := a.locate(cmd); err != nil {
		return nil, nil, err
	}
	c, err = admin.Dial(a.place.Socket)
	if err == nil {
		a.place.ViaDaemon = true
		return c, func() {}, nil
	}
	if !errors.Is(err, admin.ErrNoDaemon) {
		return nil, nil, err
	}
	if how == daemon {
		return nil, nil, fmt.Errorf("xs-backupd is not running: nothing answers at its admin socket %s (start it: systemctl start xs-backupd; or check --socket and the config)", a.place.Socket)
	}
	open := store.Open
	if how == repair {
		open = store.OpenForRepair // works when the index itself will not open
	}
	var opts store.Options
	if err := a.stored(cmd.Context(), &opts); err != nil {
		return nil, nil, err
	}
	// Staff never create a store here: a mistyped --data is an error, not
	// a new empty store.
	opts.ReadOnly, opts.Existing = how == readOnly, true
	s, err := open(cmd.Context(), a.place.Data, opts)
	if errors.Is(err, fs.ErrPermission) {
		return nil, nil, fmt.Errorf("%w: %w", errkind.ErrPermission, err)
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, syscall.ENOTDIR) {
		// Not the not-found advice about serials and snapshots (nor
		// "open DATA/lock: not a directory" for a --data naming a file).
		return nil, nil, fmt.Errorf("no store in %s: check --data (or data in the configuration file); xs-backupd creates its store when it first starts", a.place.Data)
	}
	if err != nil {
		return nil, nil, err
	}
	done = func() { s.Close() }
	if how != readOnly {
		done = func() {
			s.Close()
			giveBack(a.place.Data)
		}
	}
	return admin.Local(&admin.Service{S: s}), done, nil
}

// giveBack, when xs-admin runs as root on a store another user owns (the
// daemon's, as packaged: sudo xs-admin with xs-backupd stopped), gives
// that user the files root made there: root's files in the store would
// stop the daemon from opening it. The walk goes from directory to
// directory by file descriptor and never follows a symbolic link, and
// only entries root owns (and no file with other links) are changed: the
// store's owner cannot steer it to a file outside the store.
func giveBack(dir string) {
	if os.Geteuid() != 0 {
		return
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Uid == 0 {
		unix.Close(fd)
		return
	}
	chownRootEntries(fd, int(st.Uid), int(st.Gid), 0)
}

// chownRootEntries gives uid:gid what root owns below the directory fd,
// and closes fd.
func chownRootEntries(fd, uid, gid, depth int) {
	d := os.NewFile(uintptr(fd), "") // reads fd's entries; closes it
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, name := range names {
		var st unix.Stat_t
		if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if st.Uid == 0 && (isDir || st.Nlink == 1) {
			unix.Fchownat(fd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
		}
		if isDir && depth < 16 {
			if sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
				chownRootEntries(sub, uid, gid, depth+1)
			}
		}
	}
}

// call connects, runs one typed call and prints its result: JSON with
// --json, else text.
func call[Res any](a *app, cmd *cobra.Command, how access, fn func(context.Context, *admin.Client) (Res, error), text func(w io.Writer, res Res)) error {
	c, done, err := a.connect(cmd, how)
	if err != nil {
		return err
	}
	defer done()
	res, err := fn(cmd.Context(), c)
	if err != nil {
		return err
	}
	a.print(res, func(w io.Writer) { text(w, res) })
	return nil
}

// print writes a result: JSON with --json, else its text.
func (a *app) print(res any, text func(w io.Writer)) {
	if a.jsonOut {
		cli.JSON(a.stdout, res)
		return
	}
	tw := newTable(a.stdout)
	text(tw)
	tw.Flush()
}
