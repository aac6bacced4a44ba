#!/bin/sh
# Vendors @xterm/xterm (the browser terminal of the container shell page)
# into templates/static/xterm/: lib/xterm.js, css/xterm.css and LICENSE.
# The version is pinned and the npm tarball's sha256 verified, so running
# this again gives the same files. Needs npm (it only downloads the tarball:
# `npm pack` runs no install scripts).
set -eu

VERSION=5.5.0
SHA256=bd954fa721872170188cc5d7e83e88db3c83c9a18a4e8d24c2783d26491f59d2

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/templates/static/xterm"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
npm pack --silent "@xterm/xterm@$VERSION" >/dev/null
tgz="xterm-xterm-$VERSION.tgz"
echo "$SHA256  $tgz" | sha256sum -c -
tar xzf "$tgz"

mkdir -p "$dest"
cp package/lib/xterm.js package/css/xterm.css package/LICENSE "$dest/"
echo "$VERSION" >"$dest/VERSION"
echo "vendored @xterm/xterm $VERSION into $dest"
