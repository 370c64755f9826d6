#!/bin/sh
# stage-docs.sh DOCS OUT: lays out what `PROG gen-docs DOCS/PROG` wrote
# (man/man1/*.1, completion/{bash/PROG,zsh/_PROG,fish/PROG.fish}) as the
# packages install it under /usr/share: OUT/server for the .deb (xs-backupd,
# xs-admin), OUT/laptop for the .rpm (xo-backup). A program without docs
# adds nothing; the directories exist either way.
set -eu
docs=$1 out=$2
rm -rf "$out"
mkdir -p "$out/server" "$out/laptop"
for prog in xs-backupd xs-admin xo-backup; do
	case $prog in
	xo-backup) dst=$out/laptop zsh=zsh/site-functions ;;     # Fedora
	*) dst=$out/server zsh=zsh/vendor-completions ;;         # Debian
	esac
	src=$docs/$prog
	[ -d "$src" ] || continue
	for page in "$src"/man/man1/*.1; do
		[ -f "$page" ] || continue
		mkdir -p "$dst/man/man1"
		gzip -9n <"$page" >"$dst/man/man1/$(basename "$page").gz"
	done
	if [ -f "$src/completion/bash/$prog" ]; then
		mkdir -p "$dst/bash-completion/completions"
		cp "$src/completion/bash/$prog" "$dst/bash-completion/completions/$prog"
	fi
	if [ -f "$src/completion/zsh/_$prog" ]; then
		mkdir -p "$dst/$zsh"
		cp "$src/completion/zsh/_$prog" "$dst/$zsh/_$prog"
	fi
	if [ -f "$src/completion/fish/$prog.fish" ]; then
		mkdir -p "$dst/fish/vendor_completions.d"
		cp "$src/completion/fish/$prog.fish" "$dst/fish/vendor_completions.d/$prog.fish"
	fi
done
find "$out" -type f -exec chmod 0644 {} + 
find "$out" -type d -exec chmod 0755 {} +
