#!/usr/bin/env bash
# Builds the Debian systemd image that Molecule instances and the demo host run from:
#   tools/build-base-image.sh bookworm|trixie
# No image can be pulled on these machines, so it is made with debootstrap and imported.
# Its apt sources are those of a real host (RELEASE, RELEASE-updates, RELEASE-security) on
# the archives this machine uses; it is rebuilt only when this recipe changes (delete the
# image with `docker rmi` to force a rebuild).
set -euo pipefail

suite=${1:-bookworm}
case $suite in
    bookworm | trixie) ;;
    *) echo "build-base-image: unsupported Debian release '$suite' (bookworm or trixie)" >&2; exit 2 ;;
esac
image=${DOCKYARD_BASE_IMAGE:-dockyard/debian-systemd:${suite}}
packages=systemd,systemd-sysv,python3,python3-apt,sudo,ca-certificates,iproute2,procps
# Test clients, installed with apt in the chroot: debootstrap cannot resolve skopeo's
# virtual dependencies.
clients="curl openssl skopeo podman cron logrotate"

# The archive URIs of this machine's own apt sources (deb822 or one-line format), unless given.
machine_uri() {  # $1: "debian" or "debian-security"
    local wanted=$1
    { cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } \
        | grep -oE '(https?|file)://[^ ]+' | sed 's:/*$::' | grep -E "/${wanted}\$" \
        | grep -vE 'snapshot\.' | sed -n 1p || true
}
mirror=${DOCKYARD_DEBIAN_MIRROR:-$(machine_uri debian)}
security_mirror=${DOCKYARD_DEBIAN_SECURITY_MIRROR:-$(machine_uri debian-security)}
if [ -z "$mirror" ] || [ -z "$security_mirror" ]; then
    echo "build-base-image: no Debian archive found in /etc/apt; set DOCKYARD_DEBIAN_MIRROR and DOCKYARD_DEBIAN_SECURITY_MIRROR" >&2
    exit 2
fi

# The image is rebuilt when this recipe or the archives it uses change.
recipe=$(printf '%s %s %s' "$(sha256sum "$0")" "$mirror" "$security_mirror" | sha256sum | cut -c1-16)
if [ "$(docker image inspect -f '{{ index .Config.Labels "dockyard.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
    echo "base image $image is present"
    exit 0
fi

root=$(mktemp -d /var/tmp/dockyard-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
log=/var/tmp/dockyard-base-image-$suite.log
echo "building base image $image (debootstrap $suite, about two minutes)"
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$log" 2>&1; then
    tail -n 20 "$log" "$root/debootstrap/debootstrap.log" >&2 || true
    exit 1
fi
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
chroot "$root" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get dist-upgrade -y -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $clients" >>"$log" 2>&1 \
    || { tail -n 20 "$log" >&2; exit 1; }
# systemd in a container: no getty, no udev triggers waiting on devices.
rm -f "$root"/etc/systemd/system/getty.target.wants/* \
      "$root"/lib/systemd/system/multi-user.target.wants/getty.target
# systemd 257 (trixie) boots "degraded" when tmp.mount cannot mount; the container gives /tmp.
chroot "$root" systemctl mask tmp.mount >/dev/null 2>&1
# The container's root is overlayfs, on which podman's overlay driver cannot stack.
printf '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n' \
    >"$root/etc/containers/storage.conf"
# podman's boot-time units fail without a user session and leave systemd "degraded".
chroot "$root" systemctl mask podman-auto-update.service podman-restart.service podman-clean-transient.service \
    >/dev/null 2>&1
# Package lists stay, as on a real host (the roles refresh them when older than an hour).
chroot "$root" apt-get clean
tar -C "$root" -c . | docker import -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' \
    -c "LABEL dockyard.recipe=$recipe" -c "LABEL dockyard.release=$suite" - "$image" >/dev/null
echo "base image $image built"
