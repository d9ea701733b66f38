#!/usr/bin/env bash
# Builds the Debian systemd image that Molecule instances and the demo host run from.
# No image can be pulled on these machines, so it is made with debootstrap and imported;
# it is built only when missing (delete it with `docker rmi` to rebuild).
set -euo pipefail

suite=${1:-bookworm}
image=${DOCKYARD_BASE_IMAGE:-dockyard/debian-systemd:${suite}}
mirror=${DOCKYARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=systemd,systemd-sysv,python3,python3-apt,sudo,ca-certificates,iproute2,procps
# Test clients, installed with apt in the chroot: debootstrap cannot resolve skopeo's
# virtual dependencies.
clients="curl openssl skopeo podman cron logrotate"

# The image is rebuilt when this recipe changes.
recipe=$(sha256sum "$0" | cut -c1-16)
if [ "$(docker image inspect -f '{{ index .Config.Labels "dockyard.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
    echo "base image $image is present"
    exit 0
fi

root=$(mktemp -d /var/tmp/dockyard-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "building base image $image (debootstrap $suite, about two minutes)"
log=/var/tmp/dockyard-base-image.log
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$log" 2>&1; then
    tail -n 20 "$log" "$root/debootstrap/debootstrap.log" >&2 || true
    exit 1
fi
echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"
chroot "$root" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $clients" >>"$log" 2>&1 \
    || { tail -n 20 "$log" >&2; exit 1; }
# systemd in a container: no getty, no udev triggers waiting on devices.
rm -f "$root"/etc/systemd/system/getty.target.wants/* \
      "$root"/lib/systemd/system/multi-user.target.wants/getty.target
# The container's root is overlayfs, on which podman's overlay driver cannot stack.
printf '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n' \
    >"$root/etc/containers/storage.conf"
# podman's boot-time units fail without a user session and leave systemd "degraded".
chroot "$root" systemctl mask podman-auto-update.service podman-restart.service >/dev/null 2>&1
chroot "$root" apt-get clean
tar -C "$root" -c . | docker import -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' \
    -c "LABEL dockyard.recipe=$recipe" - "$image" >/dev/null
echo "base image $image built"
