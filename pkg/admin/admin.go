// Package admin is what the staff tool does, as one JSON command surface:
// Service runs commands on a store; Handler serves them on the daemon's
// local unix socket (Badger allows one process, so while xs-backupd runs,
// xs-admin goes through it); Client sends them. With the daemon stopped,
// xs-admin opens the store itself and calls Service directly.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// Service runs admin commands on an open store.
type Service struct {
	S *store.Store
	// Live is set when the daemon serves laptops from the same store:
	// commands that need the store to themselves (repair) are refused.
	Live bool
}

// Args are the arguments of every command (each uses the fields it needs).
type Args struct {
	Serial    string `json:"serial,omitempty"`
	NewSerial string `json:"new_serial,omitempty"`
	Snapshot  string `json:"snapshot,omitempty"`
	ReadData  bool   `json:"read_data,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// UserRow is one line of `xs-admin users`.
type UserRow struct {
	Serial     string    `json:"serial"`
	Nickname   string    `json:"nickname,omitempty"`
	Registered time.Time `json:"registered"`
	Approved   bool      `json:"approved"`
	Revoked    bool      `json:"revoked,omitempty"`
	Aliases    []string  `json:"aliases,omitempty"`
	LastBackup time.Time `json:"last_backup,omitzero"`
	Snapshots  int       `json:"snapshots"`
	Usage      int64     `json:"usage_bytes"`
}

// Commands lists the command names Do accepts.
var Commands = []string{"users", "snapshots", "approve", "revoke", "alias", "check", "repair"}

// ErrUsage marks errors in the command's arguments.
var ErrUsage = errors.New("usage")

func (s *Service) user(serial string) (*store.User, error) {
	if serial == "" {
		return nil, fmt.Errorf("%w: give the laptop's serial number (see xs-admin users)", ErrUsage)
	}
	return s.S.UserBySerial(serial)
}

// Do runs one command.
func (s *Service) Do(ctx context.Context, cmd string, a Args) (any, error) {
	switch cmd {
	case "users":
		var rows []UserRow
		for _, u := range s.S.Users() {
			snaps := s.S.Snapshots(u.ID)
			us, _ := s.S.Usage(ctx, u.ID)
			r := UserRow{Serial: u.Serial, Nickname: u.Nickname, Registered: u.Created, Approved: u.Approved,
				Revoked: u.Revoked, Aliases: u.Aliases, Snapshots: len(snaps), Usage: us.Bytes}
			if len(snaps) > 0 {
				r.LastBackup = snaps[len(snaps)-1].Time
			}
			rows = append(rows, r)
		}
		if rows == nil {
			rows = []UserRow{}
		}
		return rows, nil
	case "snapshots":
		u, err := s.user(a.Serial)
		if err != nil {
			return nil, err
		}
		return s.S.Snapshots(u.ID), nil
	case "approve", "revoke":
		u, err := s.user(a.Serial)
		if err != nil {
			return nil, err
		}
		return s.S.UpdateUser(ctx, u.ID, func(u *store.User) error {
			if cmd == "approve" {
				u.Approved = true
			} else {
				u.Revoked = true
			}
			return nil
		})
	case "alias":
		if a.Serial == "" || a.NewSerial == "" {
			return nil, fmt.Errorf("%w: xs-admin alias OLD_SERIAL NEW_SERIAL", ErrUsage)
		}
		return s.S.Alias(ctx, a.Serial, a.NewSerial)
	case "check":
		return s.S.Check(ctx, store.CheckOptions{ReadData: a.ReadData})
	case "repair":
		if s.Live {
			return nil, errors.New("repair rebuilds the whole index and needs the store to itself: stop xs-backupd (systemctl stop xs-backupd), then run xs-admin check --repair")
		}
		return s.S.Repair(ctx)
	}
	return nil, fmt.Errorf("%w: unknown command %q", ErrUsage, cmd)
}

// request and response are the socket's JSON bodies.
type request struct {
	Cmd  string `json:"cmd"`
	Args Args   `json:"args"`
}

type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Usage  bool            `json:"usage,omitempty"`
}
