#!/usr/bin/env bash
# Proves the README's two commands on a bare Debian 12 (debootstrap minbase)
# in a chroot, from a fresh clone of this repository's committed HEAD.
# Needs root and debootstrap; downloads the base system once (kept in ROOT).
#   tests/drivers/check-fresh-debian.sh [ROOT]      default ROOT: /tmp/portico-fresh-debian
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
root=${1:-/tmp/portico-fresh-debian}

if [[ ! -f $root/.portico-base ]]; then
  rm -rf "$root"
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian
  touch "$root/.portico-base"
fi
cleanup() {
  for m in "$root/dev/pts" "$root/dev" "$root/proc"; do umount "$m" 2>/dev/null || true; done
}
trap cleanup EXIT
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Every installed Debian system has an /etc/hosts naming localhost (the
# installer, cloud images and containers write one); a minbase debootstrap
# does not, and then "localhost" does not resolve (the resolver tests and the
# UDP discovery example use it).
if [[ ! -f $root/etc/hosts ]]; then
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
fi
rm -rf "$root/src" && mkdir -p "$root/src"
git clone -q "$repo" "$root/src/portico"
chroot "$root" /bin/bash -c 'cd /src/portico && bash scripts/demo.sh && CI=true bash .ci/run < /dev/null'
