#!/usr/bin/env bash
# Builds the Debian systemd image that Molecule instances and the demo host run from.
# No image can be pulled on these machines, so it is made with debootstrap and imported;
# it is built only when missing (delete it with `docker rmi` to rebuild).
set -euo pipefail

suite=${1:-bookworm}
image=${DOCKYARD_BASE_IMAGE:-dockyard/debian-systemd:${suite}}
mirror=${DOCKYARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=systemd,systemd-sysv,python3,python3-apt,sudo,ca-certificates,iproute2,procps,curl,openssl,cron,skopeo

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image is present"
    exit 0
fi

root=$(mktemp -d /var/tmp/dockyard-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "building base image $image (debootstrap $suite, about two minutes)"
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >/dev/null
echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"
# systemd in a container: no getty, no udev triggers waiting on devices.
rm -f "$root"/etc/systemd/system/getty.target.wants/* \
      "$root"/lib/systemd/system/multi-user.target.wants/getty.target
chroot "$root" apt-get clean
tar -C "$root" -c . | docker import -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' - "$image" >/dev/null
echo "base image $image built"
