#!/bin/sh
# The version packages and binaries are built as, valid for deb and rpm:
# the tag on HEAD (v1.2.3 -> 1.2.3), commits after a tag as 1.2.3+git4.gabcdef1
# (after 1.2.3, before 1.2.4), no tag as 0.0.0+gitabcdef1.
set -eu
cd "$(dirname "$0")/.."
if d=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	d=${d#v}
	case "$d" in
	*-*-g*) base=${d%-*-g*}; rest=${d#"$base"-}; n=${rest%%-*}; echo "$base+git$n.${rest#*-}" ;;
	*) echo "$d" ;;
	esac
elif rev=$(git rev-parse --short HEAD 2>/dev/null); then
	echo "0.0.0+git$rev"
else
	echo "0.0.0+unknown"
fi
