#!/usr/bin/env bash
# package-test.sh: the packages as a school installs them (make package-test,
# part of make test; CI runs it as root on Debian).
#
# Builds the packages (make packages), installs the server .deb with dpkg and
# checks the user, directories, modes and conffile; verifies the installed
# unit and the laptop's units with systemd-analyze; starts /usr/bin/xs-backupd
# as the xs-backup user with the packaged configuration (no systemd runs in
# CI); registers and backs up a laptop with xo-backup; finds the snapshot
# with xs-admin and on /metrics; stops the daemon; purges the package and
# checks that /var/lib/xs-backup and /etc/xs-backup are gone and the system
# user kept (then removes it). The
# .rpm files are inspected with rpm -qlp if rpm is installed.
#
# It changes the system (a package, a user, ports 7457-7459), so it runs only
# as root and refuses to run where xs-backup is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
	echo "package-test: skipped (needs root; CI runs it)"
	exit 0
fi

GO=${GO:-go}
BIN=${BIN:-bin}
PKGS=${PKGS:-build}
export DEBIAN_FRONTEND=noninteractive
say() { echo "package-test: $*"; }
fail() {
	echo "package-test: FAIL: $*" >&2
	exit 1
}

# What the test needs beyond dpkg (Debian's base system has dpkg, adduser,
# runuser and deb-systemd-helper).
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if dpkg-query -W -f '${Status}' xs-backup 2>/dev/null | grep -q 'installed\|config-files'; then
	fail "xs-backup is installed on this machine; this test installs and purges it: dpkg --purge xs-backup first"
fi
if getent passwd xs-backup >/dev/null || getent group xs-backup >/dev/null || [ -e /var/lib/xs-backup ] || [ -e /etc/xs-backup ]; then
	fail "a user or group xs-backup, /var/lib/xs-backup or /etc/xs-backup exists already; this test would delete it"
fi

tmp=$(mktemp -d)
daemon=""
cleanup() {
	if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
		kill -TERM "$daemon" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
	fi
	if dpkg-query -W xs-backup >/dev/null 2>&1; then
		say "purging the package left installed by a failure"
		dpkg --purge xs-backup >/dev/null 2>&1 || true
	fi
	# The purge keeps the system user; none was here before this test.
	if getent passwd xs-backup >/dev/null; then userdel xs-backup 2>/dev/null || true; fi
	if getent group xs-backup >/dev/null; then groupdel xs-backup 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

say "building the packages"
make --no-print-directory packages GO="$GO" BIN="$BIN" PKGS="$PKGS"
version=$(scripts/version.sh)
arch=$(dpkg --print-architecture)
deb=$PKGS/xs-backup_${version}_${arch}.deb
[ -s "$deb" ] || fail "$deb was not built (make packages)"

# The laptop's packages: nfpm needs no rpm tools; rpm, if here, reads them.
for rpmarch in i686 armv7hl; do
	rpmfile=$PKGS/xo-backup-${version}-1.${rpmarch}.rpm
	[ -s "$rpmfile" ] || fail "$rpmfile was not built"
	[ "$(head -c 4 "$rpmfile" | od -An -tx1 | tr -d ' \n')" = edabeedb ] || fail "$rpmfile is not an rpm"
	if command -v rpm >/dev/null 2>&1; then
		list=$(rpm -qlp "$rpmfile" 2>/dev/null)
		for f in /usr/bin/xo-backup /usr/lib/systemd/system/xo-backup@.service /usr/lib/systemd/system/xo-backup@.timer; do
			grep -qx "$f" <<<"$list" || fail "$rpmfile lacks $f"
		done
		[ "$(rpm -qp --qf '%{ARCH}' "$rpmfile" 2>/dev/null)" = "$rpmarch" ] || fail "$rpmfile: wrong architecture"
		say "$rpmfile: $(wc -l <<<"$list") files (rpm -qlp)"
	else
		say "$rpmfile: $(stat -c %s "$rpmfile") bytes (rpm is not installed: contents not listed)"
	fi
done

# The units: the server's as installed below, the laptop's here, in a root
# with this system's units (the targets they name) where xo-backup is
# installed (ExecStart= must exist).
man_check() { # the man page of $1 installed and man able to find it?
	if command -v man >/dev/null 2>&1 && man -w "$1" >/dev/null 2>&1; then echo --man=yes; else echo --man=no; fi
}
root=$tmp/laptop-root
mkdir -p "$root/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
install -D -m 0755 "$BIN/xo-backup" "$root/usr/bin/xo-backup"
install -D -m 0644 dist/systemd/xo-backup@.service "$root/usr/lib/systemd/system/xo-backup@.service"
install -D -m 0644 dist/systemd/xo-backup@.timer "$root/usr/lib/systemd/system/xo-backup@.timer"
systemd-analyze verify --man=no --root="$root" xo-backup@olpc.service xo-backup@olpc.timer ||
	fail "systemd-analyze verify of the laptop's units"
say "the laptop's units verify"

say "dpkg -i $deb"
dpkg -i "$deb"

# The user, the directories, the configuration.
getent passwd xs-backup >/dev/null || fail "no user xs-backup"
getent group xs-backup >/dev/null || fail "no group xs-backup"
[ "$(getent passwd xs-backup | cut -d: -f6)" = /var/lib/xs-backup ] || fail "xs-backup's home is not /var/lib/xs-backup"
uid=$(id -u xs-backup)
[ "$uid" -lt 1000 ] || fail "xs-backup is not a system user (uid $uid)"
[ "$(stat -c '%U:%G %a' /var/lib/xs-backup)" = "xs-backup:xs-backup 750" ] ||
	fail "/var/lib/xs-backup is $(stat -c '%U:%G %a' /var/lib/xs-backup), want xs-backup:xs-backup 750"
grep -qx /etc/xs-backup/xs-backup.toml /var/lib/dpkg/info/xs-backup.conffiles || fail "the configuration is not a conffile"
cmp -s /etc/xs-backup/xs-backup.toml dist/xs-backup.toml || fail "/etc/xs-backup/xs-backup.toml is not dist/xs-backup.toml"
for f in /usr/bin/xs-backupd /usr/bin/xs-admin; do
	[ -x "$f" ] || fail "$f missing"
done
[ -L /etc/systemd/system/multi-user.target.wants/xs-backupd.service ] || fail "xs-backupd.service is not enabled"
unit=/usr/lib/systemd/system/xs-backupd.service
systemd-analyze verify "$(man_check xs-backupd)" "$unit" || fail "systemd-analyze verify $unit"
say "installed: user xs-backup ($uid), /var/lib/xs-backup 0750, conffile, unit enabled and verified"
for f in /usr/share/man/man1/xs-backupd.1.gz /usr/share/man/man1/xs-admin.1.gz /usr/share/bash-completion/completions/xs-admin; do
	dpkg -L xs-backup | grep -qx "$f" || fail "$f is not in the package (gen-docs output missing): $(dpkg -L xs-backup | grep -e man1 -e completion | head -5)"
done
say "man pages and completions: $(dpkg -L xs-backup | grep -c -e /man1/ -e completion) files"

# The daemon from /usr/bin as its user with the packaged configuration.
runuser -u xs-backup -- /usr/bin/xs-backupd --config /etc/xs-backup/xs-backup.toml >"$tmp/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 300); do
	grep -q "xs-backupd ready" "$tmp/daemon.log" && break
	kill -0 "$daemon" 2>/dev/null || { cat "$tmp/daemon.log" >&2; fail "xs-backupd stopped at start"; }
	sleep 0.1
done
grep -q "xs-backupd ready" "$tmp/daemon.log" || { cat "$tmp/daemon.log" >&2; fail "xs-backupd not ready after 30 s"; }
owner=$(stat -c %U /var/lib/xs-backup/server.key)
[ "$owner" = xs-backup ] || fail "the server key belongs to $owner"
say "xs-backupd runs as xs-backup"

# A laptop registers (registration is open by default) and backs up.
journal=$tmp/journal
mkdir -p "$journal/store/ab/abcdef01-0000-4000-8000-000000000001" "$journal/store/cd"
echo "Ma tortue" >"$journal/store/ab/abcdef01-0000-4000-8000-000000000001/title"
head -c 300000 /dev/urandom >"$journal/store/cd/data"
xo() { "$BIN/xo-backup" --state "$tmp/laptop-state" "$@"; }
xo register --server 127.0.0.1:7457 --serial SHC0PKG01 --nickname "package test" || fail "xo-backup register"
xo run --source "$journal" --force || fail "xo-backup run"

# The snapshot, through the daemon's admin socket, as root and as the user.
snaps=$(/usr/bin/xs-admin --json snapshots SHC0PKG01) || fail "xs-admin snapshots (as root)"
grep -q '"id"' <<<"$snaps" || fail "xs-admin snapshots shows no snapshot: $snaps"
runuser -u xs-backup -- /usr/bin/xs-admin --json snapshots SHC0PKG01 | grep -q '"id"' || fail "xs-admin snapshots (as xs-backup)"
metrics=$(curl -fsS http://127.0.0.1:7458/metrics) || fail "GET /metrics"
grep -qx 'xs_commits_total 1' <<<"$metrics" || fail "/metrics: xs_commits_total is not 1"
grep -q "^xs_build_info{.*version=\"$version\"" <<<"$metrics" || fail "/metrics: xs_build_info lacks version $version"
grep -q '^xs_laptop_last_backup_age_seconds{serial="SHC0PKG01"}' <<<"$metrics" || fail "/metrics: no backup age for SHC0PKG01"
say "a laptop backed up: xs-admin snapshots lists it; /metrics counts it"

kill -TERM "$(pgrep -P "$daemon" -x xs-backupd || echo "$daemon")"
wait "$daemon" || { cat "$tmp/daemon.log" >&2; fail "xs-backupd did not stop cleanly"; }
daemon=""
grep -q stopped "$tmp/daemon.log" || fail "xs-backupd did not log its stop"

say "dpkg --purge xs-backup"
dpkg --purge xs-backup
# The system user and group stay (backups kept elsewhere are theirs; a
# freed uid would go to the next system user): this test made them.
[ "$(id -u xs-backup 2>/dev/null)" = "$uid" ] || fail "purge deleted the user xs-backup (uid $uid)"
getent group xs-backup >/dev/null || fail "purge deleted the group xs-backup"
userdel xs-backup
! getent group xs-backup >/dev/null || groupdel xs-backup
for p in /var/lib/xs-backup /etc/xs-backup /usr/bin/xs-backupd /usr/bin/xs-admin /etc/systemd/system/multi-user.target.wants/xs-backupd.service; do
	[ ! -e "$p" ] && [ ! -L "$p" ] || fail "$p is left after purge"
done
say "ok (purged: no /var/lib/xs-backup, no /etc/xs-backup; the user kept)"
