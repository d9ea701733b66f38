#!/usr/bin/env bash
# Everything a fresh Debian 12 machine needs to run the demo and the tests:
# Debian packages, a running Docker engine, the Python tool chain in .venv and the
# base image of the test instances. Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
# docker.io, skopeo and podman are also the demo's clients on this host (podman's overlay
# storage works on the host's ext4 as root).
apt_packages=(docker.io debootstrap docker-registry nginx-light skopeo podman python3-venv python3-bcrypt
              python3-jwt python3-cryptography python3-gunicorn python3-prometheus-client openssl curl git rsync
              shellcheck logrotate)

missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
    echo "bootstrap: starting dockerd"
    (setsid dockerd >/var/log/dockerd.log 2>&1 &)
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -n 20 /var/log/dockerd.log; echo "bootstrap: dockerd did not start" >&2; exit 1; }
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "bootstrap: creating $venv"
    python3 -m venv "$venv"
fi
if ! cmp -s requirements-dev.txt "$venv/.requirements-dev.txt"; then
    echo "bootstrap: installing Python tools into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r requirements-dev.txt
    cp requirements-dev.txt "$venv/.requirements-dev.txt"
fi

# promtool checks and unit-tests the shipped alert rules (make rules). Only the binary is
# taken from Debian's prometheus package: nothing is installed and no Prometheus runs.
promtool=.build/tools/promtool
if [ ! -x "$promtool" ]; then
    echo "bootstrap: extracting promtool from Debian's prometheus package"
    download=$(mktemp -d)
    trap 'rm -rf "$download"' EXIT
    # apt-get download writes the file as the _apt user.
    chown _apt "$download"
    if ! (cd "$download" && apt-get download -qq prometheus >/dev/null 2>&1); then
        apt-get update -qq
        (cd "$download" && apt-get download -qq prometheus >/dev/null)
    fi
    dpkg-deb --fsys-tarfile "$download"/prometheus_*.deb | tar -x -C "$download" ./usr/bin/promtool
    install -D -m 0755 "$download/usr/bin/promtool" "$promtool"
fi

link=.build/collections/ansible_collections/dockyard/registry
mkdir -p "$(dirname "$link")"
[ -L "$link" ] || ln -sfn ../../../.. "$link"

# Debian 13 (the current stable, the demo's default) and Debian 12 (LTS): both are tested.
for release in trixie bookworm; do
    tools/build-base-image.sh "$release"
done
