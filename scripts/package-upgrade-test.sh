#!/usr/bin/env bash
# package-upgrade-test.sh: the server's .deb over its life at a school, where
# scripts/package-test.sh installs it once and purges it (root only; like
# package-test.sh it refuses to run where xs-backup is installed).
#
# Builds the server .deb twice (the tree's version, then a later one) for
# this machine's architecture, and xo-backup for a laptop, into a temporary
# directory (tracked files are not touched), then:
#
#   upgrade    v1 installed, a laptop registers and backs up, staff edit the
#              conffile; dpkg -i v2 (no --force-conf*: it must not prompt):
#              the edit is kept, the store (key, snapshots, owners, modes) is
#              the same byte for byte, the daemon starts with the same key,
#              lists the snapshot and restores it byte for byte.
#   remove     dpkg -r keeps the data, key, conffile and user; the unit is
#              masked; reinstalling unmasks it and the laptop backs up again
#              without registering, its history there.
#   twice      the same version installed again and dpkg-reconfigure: one
#              user, same uid, same store, same modes.
#   purge      no /var/lib/xs-backup, /etc/xs-backup, unit link or
#              deb-systemd-helper state left; the system user and group stay
#              with their ids (Debian's advice: files of theirs may remain),
#              and the test removes them between scenarios.
#   odd states a system user xs-backup made beforehand (other home, a login
#              shell); a group xs-backup alone; a user xs-backup without such
#              a group; /var/lib/xs-backup holding a store xs-backupd made as
#              root, with symbolic links out of it (to a root-owned directory
#              and file standing for /etc): the links are never followed, the
#              daemon starts or says how to fix the owners.
#   data elsewhere  data = another directory in the conffile: after purge no
#              file may be left owned by a uid the purge freed (the next
#              system user would get it, and read the children's backups).
#
# A failed step stops the test; a defect in the packaging is reported as a
# FAIL line and the test goes on, exiting 1 at the end. It changes the system
# (a package, users, ports 7457-7459), and leaves it as it found it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
	echo "package-upgrade-test: skipped (needs root; CI runs it)"
	exit 0
fi

GO=${GO:-go}
# nfpm at the version the Makefile pins (NFPM= overrides it, as for make).
NFPM=${NFPM:-$(make -s --no-print-directory --eval 'print-nfpm: ; @echo $(NFPM)' GO="$GO" print-nfpm)}
export DEBIAN_FRONTEND=noninteractive
say() { echo "package-upgrade-test: $*"; }
fail() {
	echo "package-upgrade-test: FAIL: $*" >&2
	exit 1
}
defects=0
defect() { # a packaging defect: reported, and the test goes on
	echo "package-upgrade-test: FAIL: $*" >&2
	defects=$((defects + 1))
}

for c in dpkg dpkg-deb runuser getent useradd groupadd userdel groupdel; do
	command -v "$c" >/dev/null 2>&1 || fail "$c is needed"
done
if dpkg-query -W -f '${Status}' xs-backup 2>/dev/null | grep -q 'installed\|config-files\|unpacked'; then
	fail "xs-backup is installed on this machine; this test installs and purges it: dpkg --purge xs-backup first"
fi
if getent passwd xs-backup >/dev/null || getent group xs-backup >/dev/null || [ -e /var/lib/xs-backup ] || [ -L /var/lib/xs-backup ] || [ -e /etc/xs-backup ]; then
	fail "a user or group xs-backup, /var/lib/xs-backup or /etc/xs-backup exists already; this test would delete it"
fi
reuse=xs-upgtest-reuse # a system user made to see which uid comes next
if getent passwd "$reuse" >/dev/null || getent group "$reuse" >/dev/null; then
	fail "a user or group $reuse exists already; this test would delete it"
fi

tmp=$(mktemp -d)
# The xs-backup user reaches its data directory under $tmp (data elsewhere).
chmod 0711 "$tmp"
daemon=""
cleanup() {
	if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
		kill -TERM "$(pgrep -P "$daemon" -x xs-backupd || echo "$daemon")" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
	fi
	if dpkg-query -W xs-backup >/dev/null 2>&1; then
		say "purging the package left installed by a failure"
		dpkg --purge --force-all xs-backup >/dev/null 2>&1 || true
	fi
	# None of these existed when the test began (checked above).
	getent passwd xs-backup >/dev/null && userdel xs-backup 2>/dev/null
	getent group xs-backup >/dev/null && groupdel xs-backup 2>/dev/null
	getent passwd "$reuse" >/dev/null && userdel "$reuse" 2>/dev/null
	getent group "$reuse" >/dev/null && groupdel "$reuse" 2>/dev/null
	[ -L /var/lib/xs-backup ] && rm -f /var/lib/xs-backup
	rm -rf /var/lib/xs-backup /etc/xs-backup "$tmp"
}
trap cleanup EXIT

# The packages: the tree's version, and a later one (what an upgrade brings:
# new binaries, the same conffile). Man pages are package-test.sh's concern:
# an empty share tree here.
case "$(dpkg --print-architecture)" in
amd64) goarch=amd64 ;;
arm64) goarch=arm64 ;;
*) fail "the server .deb is built for amd64 and arm64, not $(dpkg --print-architecture)" ;;
esac
v1=$(scripts/version.sh)
v2=$v1+upgtest2
dpkg --compare-versions "$v2" gt "$v1" || fail "$v2 does not sort after $v1"
say "building the server .deb as $v1 and $v2, and xo-backup"
mkdir -p "$tmp/share"
for v in "$v1" "$v2"; do
	n=$([ "$v" = "$v1" ] && echo 1 || echo 2)
	CGO_ENABLED=0 GOOS=linux GOARCH=$goarch "$GO" build -trimpath \
		-ldflags "-s -w -X github.com/xs-backup/xs-backup/internal/version.Version=$v" \
		-o "$tmp/bin/v$n/" ./cmd/xs-backupd ./cmd/xs-admin
	PKG_ARCH=$goarch BUILD_DIR=$tmp/bin/v$n SHARE_DIR=$tmp/share VERSION=$v \
		$NFPM pkg --packager deb --config dist/nfpm/server.yaml --target "$tmp/v$n.deb" >/dev/null
	[ -s "$tmp/v$n.deb" ] || fail "$tmp/v$n.deb was not built"
done
deb1=$tmp/v1.deb deb2=$tmp/v2.deb
CGO_ENABLED=0 "$GO" build -o "$tmp/bin/" ./cmd/xo-backup

data=/var/lib/xs-backup
conf=/etc/xs-backup/xs-backup.toml
wants=/etc/systemd/system/multi-user.target.wants/xs-backupd.service
mask=/etc/systemd/system/xs-backupd.service

# dpkg with no terminal: a conffile question fails instead of waiting.
install_deb() { dpkg -i "$1" </dev/null >"$tmp/dpkg.log" 2>&1; }
installed_version() { dpkg-query -W -f '${Status} ${Version}' xs-backup 2>/dev/null; }

start_daemon() { # as the xs-backup user with the packaged configuration
	# Emptied here, not by the background job's redirection: the loop below
	# must never read the last daemon's "ready".
	: >"$tmp/daemon.log"
	runuser -u xs-backup -- /usr/bin/xs-backupd --config "$conf" >>"$tmp/daemon.log" 2>&1 &
	daemon=$!
	for _ in $(seq 300); do
		grep -q "xs-backupd ready" "$tmp/daemon.log" && return 0
		kill -0 "$daemon" 2>/dev/null || { wait "$daemon" || true; daemon=""; return 1; }
		sleep 0.1
	done
	cat "$tmp/daemon.log" >&2
	fail "xs-backupd not ready after 30 s"
}
stop_daemon() { # SIGTERM to xs-backupd itself, runuser's child
	local pid st=0
	pid=$(pgrep -P "$daemon" -x xs-backupd) || fail "no xs-backupd under runuser ($daemon): $(ps -o pid,comm --ppid "$daemon" | tail -n +2)"
	kill -TERM "$pid"
	wait "$daemon" || st=$?
	[ "$st" = 0 ] || { cat "$tmp/daemon.log" >&2; fail "xs-backupd ($pid) did not stop cleanly (exit $st)"; }
	daemon=""
	grep -q stopped "$tmp/daemon.log" || fail "xs-backupd did not log its stop"
}
server_key() { sed -n 's/.*xs-backupd ready.* server_key=\([^ ]*\).*/\1/p' "$tmp/daemon.log"; }
# Everything under a directory: type, mode, owner, size, content.
tree() {
	(cd "$1" && find . -printf '%M %u:%g %s %p\n' | sort &&
		find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

journal=$tmp/journal
xo() { "$tmp/bin/xo-backup" --state "$tmp/laptop-state" "$@"; }
snapshots() { /usr/bin/xs-admin --json snapshots "$1" | grep -c '"id"' || true; }
restored_equal() { # the latest backup, restored, is the Journal byte for byte
	rm -rf "$tmp/restored"
	xo restore --to "$tmp/restored" >/dev/null || fail "xo-backup restore"
	diff -r "$journal" "$tmp/restored" >&2 || fail "the restored Journal differs from the laptop's"
}

purge_and_check() { # $1: what was installed; $2 = user-may-stay: the next step needs the user
	local uid
	uid=$(id -u xs-backup 2>/dev/null || true)
	dpkg --purge xs-backup >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg --purge ($1)"; }
	! dpkg-query -W xs-backup >/dev/null 2>&1 || fail "xs-backup still known to dpkg after purge ($1)"
	# The system user and group stay (backups kept elsewhere are theirs;
	# a freed uid would go to the next system user made here).
	[ -n "$uid" ] && [ "$(id -u xs-backup 2>/dev/null)" = "$uid" ] || defect "purge deleted the user xs-backup (uid $uid) ($1)"
	getent group xs-backup >/dev/null || defect "purge deleted the group xs-backup ($1)"
	for p in $data /etc/xs-backup /usr/bin/xs-backupd /usr/bin/xs-admin $wants $mask \
		/var/lib/systemd/deb-systemd-helper-enabled/xs-backupd.service.dsh-also \
		/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/xs-backupd.service \
		/var/lib/systemd/deb-systemd-helper-masked/xs-backupd.service; do
		[ ! -e "$p" ] && [ ! -L "$p" ] || defect "$p is left after purge ($1)"
	done
	[ "${2:-}" = user-may-stay ] || leftovers
}
leftovers() { # what the package did not remove, the next scenario must not find
	if getent passwd xs-backup >/dev/null; then userdel xs-backup 2>/dev/null; fi
	if getent group xs-backup >/dev/null; then groupdel xs-backup; fi
	rm -rf $data /etc/xs-backup
}

# ---------------------------------------------------------------- upgrade
say "upgrade: dpkg -i $v1, a laptop backs up"
install_deb "$deb1" || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i $v1"; }
cmp -s "$conf" dist/xs-backup.toml || fail "$conf is not dist/xs-backup.toml"
start_daemon || { cat "$tmp/daemon.log" >&2; fail "xs-backupd ($v1) stopped at start"; }
key1=$(server_key)
[ -n "$key1" ] || fail "no server_key in the ready line"
mkdir -p "$journal/store/ab/abcdef01-0000-4000-8000-000000000001" "$journal/store/cd"
echo "Ma tortue" >"$journal/store/ab/abcdef01-0000-4000-8000-000000000001/title"
head -c 300000 /dev/urandom >"$journal/store/cd/data"
xo register --server 127.0.0.1:7457 --serial SHC0UPG01 --nickname "upgrade test" >/dev/null || fail "xo-backup register"
xo run --source "$journal" --force >/dev/null || fail "xo-backup run ($v1)"
[ "$(snapshots SHC0UPG01)" = 1 ] || fail "xs-admin snapshots ($v1) does not list the backup"
stop_daemon

# Staff edit the configuration: a quota and a comment.
sed -i 's/^soft = "0"/soft = "5GiB"                    # edited by the school (upgrade test)/' "$conf"
grep -q '^soft = "5GiB"' "$conf" || fail "could not edit $conf"
cp "$conf" "$tmp/conf.edited"
tree $data >"$tmp/tree.before"
keyfile=$(sha256sum <$data/server.key)
uid=$(id -u xs-backup)

say "upgrade: dpkg -i $v2 (the conffile edited, no --force-conf*)"
if ! install_deb "$deb2"; then
	cat "$tmp/dpkg.log" >&2
	grep -q 'conffile prompt' "$tmp/dpkg.log" && fail "dpkg -i $v2 asked about the conffile (an unchanged conffile must not prompt)"
	fail "dpkg -i $v2 (upgrade)"
fi
[ "$(installed_version)" = "install ok installed $v2" ] || fail "after the upgrade: $(installed_version)"
cmp -s "$conf" "$tmp/conf.edited" || defect "the upgrade did not keep the edited $conf"
ls /etc/xs-backup/*.dpkg-* >/dev/null 2>&1 && defect "the upgrade left $(ls /etc/xs-backup/*.dpkg-*)"
tree $data >"$tmp/tree.after"
diff "$tmp/tree.before" "$tmp/tree.after" >&2 || defect "the upgrade changed $data (owners, modes or contents: diff above)"
[ "$(sha256sum <$data/server.key)" = "$keyfile" ] || defect "the upgrade changed the server key"
[ "$(id -u xs-backup)" = "$uid" ] || defect "the upgrade changed xs-backup's uid"
[ "$(stat -c '%U:%G %a' $data)" = "xs-backup:xs-backup 750" ] || defect "$data is $(stat -c '%U:%G %a' $data) after the upgrade"
[ -L $wants ] || defect "xs-backupd.service is no longer enabled after the upgrade"
start_daemon || { cat "$tmp/daemon.log" >&2; fail "xs-backupd ($v2) stopped at start after the upgrade"; }
grep -q "xs-backupd starting.* version=$v2" "$tmp/daemon.log" || fail "the daemon running is not $v2"
[ "$(server_key)" = "$key1" ] || defect "the server key changed across the upgrade: $key1 -> $(server_key)"
[ "$(snapshots SHC0UPG01)" = 1 ] || defect "xs-admin snapshots ($v2) does not list the backup made under $v1"
restored_equal
echo "a new entry after the upgrade" >"$journal/store/ab/abcdef01-0000-4000-8000-000000000001/description"
xo run --source "$journal" --force >/dev/null || fail "xo-backup run after the upgrade (the laptop's pin)"
[ "$(snapshots SHC0UPG01)" = 2 ] || defect "the backup after the upgrade is not listed"
stop_daemon
say "upgrade: conffile kept, store unchanged byte for byte, same key $key1, snapshot restored"

# ---------------------------------------------------------------- remove
say "remove: dpkg -r, then dpkg -i $v2 again"
tree $data >"$tmp/tree.before"
dpkg -r xs-backup >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -r"; }
[ "$(installed_version)" = "deinstall ok config-files $v2" ] || fail "after dpkg -r: $(installed_version)"
cmp -s "$conf" "$tmp/conf.edited" || defect "dpkg -r did not keep the edited $conf"
tree $data >"$tmp/tree.after" 2>/dev/null || true
diff "$tmp/tree.before" "$tmp/tree.after" >&2 || defect "dpkg -r changed $data (diff above)"
[ "$(id -u xs-backup 2>/dev/null)" = "$uid" ] || defect "dpkg -r removed or changed the user xs-backup"
[ ! -e /usr/bin/xs-backupd ] || fail "/usr/bin/xs-backupd is left after dpkg -r"
[ "$(readlink $mask 2>/dev/null)" = /dev/null ] || defect "dpkg -r did not mask xs-backupd.service (as dh_installsystemd does)"
install_deb "$deb2" || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i $v2 after dpkg -r"; }
[ "$(installed_version)" = "install ok installed $v2" ] || fail "after the reinstall: $(installed_version)"
[ ! -e $mask ] && [ ! -L $mask ] || defect "the reinstall left xs-backupd.service masked"
[ -L $wants ] || defect "the reinstall did not enable xs-backupd.service"
cmp -s "$conf" "$tmp/conf.edited" || defect "the reinstall did not keep the edited $conf"
diff "$tmp/tree.before" <(tree $data) >&2 || defect "the reinstall changed $data (diff above)"
start_daemon || { cat "$tmp/daemon.log" >&2; fail "xs-backupd stopped at start after the reinstall"; }
[ "$(server_key)" = "$key1" ] || defect "the server key changed across remove and reinstall"
echo "after the reinstall" >"$journal/store/cd/note"
xo run --source "$journal" --force >/dev/null || defect "the laptop could not back up after the reinstall without registering again"
[ "$(snapshots SHC0UPG01)" = 3 ] || defect "after the reinstall the laptop's history is not 3 backups: $(snapshots SHC0UPG01)"
[ "$(xo list --json | grep -c '"id"')" = 3 ] || defect "xo-backup list after the reinstall does not show 3 backups"
restored_equal
stop_daemon
say "remove: data, key, conffile, user kept; the laptop backs up again unregistered, 3 backups"

# ---------------------------------------------------------------- twice
say "twice: dpkg -i $v2 over itself, dpkg-reconfigure xs-backup"
tree $data >"$tmp/tree.before"
install_deb "$deb2" || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i $v2 over itself"; }
if command -v dpkg-reconfigure >/dev/null 2>&1; then
	dpkg-reconfigure xs-backup </dev/null >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; defect "dpkg-reconfigure xs-backup"; }
fi
/var/lib/dpkg/info/xs-backup.postinst configure "$v2" </dev/null >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; defect "postinst configure run again"; }
[ "$(grep -c '^xs-backup:' /etc/passwd)" = 1 ] || defect "/etc/passwd has $(grep -c '^xs-backup:' /etc/passwd) lines for xs-backup"
[ "$(grep -c '^xs-backup:' /etc/group)" = 1 ] || defect "/etc/group has $(grep -c '^xs-backup:' /etc/group) lines for xs-backup"
[ "$(id -u xs-backup)" = "$uid" ] || defect "running the maintainer scripts again changed xs-backup's uid"
diff "$tmp/tree.before" <(tree $data) >&2 || defect "running the maintainer scripts again changed $data (diff above)"
cmp -s "$conf" "$tmp/conf.edited" || defect "running the maintainer scripts again changed $conf"
[ -L $wants ] || defect "xs-backupd.service is not enabled after the scripts ran again"
say "twice: one user (uid $uid), store and conffile unchanged"

say "purge"
purge_and_check "after upgrade and reinstall"

# ---------------------------------------------------------------- odd states
# A system user made beforehand (say, for an NFS uid), with a login shell and
# another home; /var/lib/xs-backup holding a store xs-backupd made as root
# (the tarball tried first), with links out of it.
say "odd states: a user xs-backup made beforehand, $data with root's store and links out of it"
useradd --system --user-group --home-dir /nonexistent --shell /bin/bash xs-backup
preuid=$(id -u xs-backup)
sed "s#^data = .*#data = \"$data\"#" dist/xs-backup.toml >"$tmp/root.toml"
: >"$tmp/daemon.log"
"$tmp/bin/v1/xs-backupd" --config "$tmp/root.toml" >>"$tmp/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 300); do grep -q "xs-backupd ready" "$tmp/daemon.log" && break; sleep 0.1; done
rootkey=$(server_key)
[ -n "$rootkey" ] || { cat "$tmp/daemon.log" >&2; fail "xs-backupd as root did not start"; }
kill -TERM "$daemon"
wait "$daemon" || fail "xs-backupd as root did not stop cleanly"
daemon=""
# Stand-ins for /etc: a root-owned directory and a secret file outside.
outside=$tmp/outside
mkdir -m 0755 "$outside"
echo secret >"$outside/shadow"
chmod 0600 "$outside/shadow"
ln -s "$outside" $data/etc-link
ln -s "$outside/shadow" $data/shadow-link
ln -s "$outside/shadow" $data/server.key.old
outside_state() { stat -c '%U:%G %a %n' "$outside" "$outside/shadow"; }
before_outside=$(outside_state)
if install_deb "$deb1"; then
	[ "$(id -u xs-backup)" = "$preuid" ] || defect "the install changed the existing user's uid"
	say "odd states: the existing user is kept as it was: $(getent passwd xs-backup | cut -d: -f6,7) (home, shell)"
	[ "$(stat -c '%U:%G %a' $data)" = "xs-backup:xs-backup 750" ] ||
		defect "$data is $(stat -c '%U:%G %a' $data) after installing over root's directory"
	[ "$(outside_state)" = "$before_outside" ] || defect "the install followed a link out of $data: $(outside_state)"
	before_outside=$(outside_state) # the purge is judged on its own
	for l in etc-link shadow-link server.key.old; do
		[ -L $data/$l ] || defect "the install replaced the link $data/$l"
	done
	if start_daemon; then
		say "odd states: xs-backupd starts over root's store"
		[ "$(server_key)" = "$rootkey" ] || defect "the existing server key was replaced"
		stop_daemon
	elif grep -q 'chown -R xs-backup' "$tmp/daemon.log"; then
		say "odd states: xs-backupd refuses root's store and says: $(grep -o 'advice=.*' "$tmp/daemon.log")"
		# What it advises: chown -R follows no link (-P).
		chown -R xs-backup: $data
		[ "$(outside_state)" = "$before_outside" ] || defect "the advised chown -R followed a link out of $data"
		start_daemon || { cat "$tmp/daemon.log" >&2; fail "xs-backupd did not start after the advised chown"; }
		[ "$(server_key)" = "$rootkey" ] || defect "the existing server key was replaced"
		stop_daemon
	else
		cat "$tmp/daemon.log" >&2
		defect "xs-backupd stopped over root's store without saying how to fix the owners"
	fi
else
	cat "$tmp/dpkg.log" >&2
	defect "dpkg -i failed over an existing user xs-backup and root's $data"
fi
purge_and_check "an existing user, root's store"
[ "$(outside_state)" = "$before_outside" ] || defect "the purge followed a link out of $data: $(outside_state)"
[ -f "$outside/shadow" ] || defect "the purge deleted a file a link in $data pointed to"
say "odd states: no link followed by the install or the purge"

say "odd states: a group xs-backup alone"
groupadd --system xs-backup
gid=$(getent group xs-backup | cut -d: -f3)
if install_deb "$deb1"; then
	[ "$(id -g xs-backup)" = "$gid" ] || defect "the user xs-backup's group is $(id -gn xs-backup), not the existing xs-backup"
	[ "$(stat -c '%U:%G %a' $data)" = "xs-backup:xs-backup 750" ] || defect "$data is $(stat -c '%U:%G %a' $data)"
else
	cat "$tmp/dpkg.log" >&2
	defect "dpkg -i failed where a group xs-backup existed alone"
fi
purge_and_check "an existing group"

say "odd states: a user xs-backup without a group xs-backup"
useradd --system --no-user-group --gid nogroup --home-dir /nonexistent --shell /usr/sbin/nologin xs-backup
if install_deb "$deb1"; then
	[ "$(stat -c %U $data)" = xs-backup ] || defect "$data belongs to $(stat -c %U $data)"
	start_daemon || { cat "$tmp/daemon.log" >&2; defect "xs-backupd did not start for a user xs-backup without its own group"; }
	[ -z "$daemon" ] || stop_daemon
else
	defect "dpkg -i failed where a user xs-backup existed without a group xs-backup (the package is left $(installed_version)): $(grep -m1 -i 'chown\|error' "$tmp/dpkg.log")"
fi
purge_and_check "an existing user without its group"

# ---------------------------------------------------------------- data elsewhere
# data = "/library/xs-backup" on an OLPC XS: the purge does not delete it
# (nor should it), so it must not free the uid that owns it either.
say "data elsewhere: data = a directory outside /var/lib/xs-backup, then purge"
install_deb "$deb1" || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i $v1"; }
library=$tmp/library/xs-backup
mkdir -p "$library"
chown xs-backup:xs-backup "$library"
chmod 0750 "$library"
sed -i "s#^data = .*#data = \"$library\"#" "$conf"
start_daemon || { cat "$tmp/daemon.log" >&2; fail "xs-backupd with data = $library"; }
stop_daemon
[ -s "$library/server.key" ] || fail "no server key in $library"
ouid=$(id -u xs-backup)
# Here keeping the user is one right answer (the other: no file of its uid left).
purge_and_check "data elsewhere" user-may-stay
owned=$(find "$library" -uid "$ouid" | wc -l)
if [ "$owned" -gt 0 ] && ! getent passwd "$ouid" >/dev/null; then
	# The next system user a package makes on this server (as this one
	# does: adduser where it is installed).
	if command -v adduser >/dev/null 2>&1; then
		adduser --system --group --home /nonexistent --no-create-home "$reuse" >/dev/null 2>&1
	else
		useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin "$reuse"
	fi
	next=$(id -u "$reuse")
	how="a new system user gets uid $next"
	[ "$next" = "$ouid" ] && how="the next system user made ($reuse) got uid $ouid and owns the server key and every backup"
	defect "purge deleted the user xs-backup (uid $ouid) while $owned files it owns remain in the configured data directory: $how"
	userdel "$reuse"
	if getent group "$reuse" >/dev/null; then groupdel "$reuse"; fi
fi
leftovers
rm -rf "$tmp/library"

if [ "$defects" -gt 0 ]; then
	echo "package-upgrade-test: FAIL: $defects packaging defects (FAIL lines above)" >&2
	exit 1
fi
say ok
