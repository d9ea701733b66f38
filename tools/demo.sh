#!/usr/bin/env bash
# The local demo registry: one Debian systemd container provisioned with site.yml, used
# from this host by its own skopeo, podman and docker.
#
#   tools/demo.sh up     start (or reuse) the container `dockyard-demo` from the Debian 13
#                        base image (DOCKYARD_DEMO_RELEASE=12 for Debian 12), provision it
#                        with inventories/demo/hosts.yml (token authentication), make this
#                        host's clients trust the demo CA for localhost:PORT, push a sample
#                        image from this host with skopeo and pull it back, show that the
#                        pull-only robot account can pull it and cannot push, and print the
#                        commands for docker, podman and skopeo
#   tools/demo.sh down   remove the container and the CA files `up` gave the host's clients
#                        (the CA, the password and the robot's secret stay in inventories/demo/)
#
# `make demo` (RELEASE=12|13) runs tools/bootstrap.sh first (Docker, podman, .venv, base
# images). The container's port 443 is published on 127.0.0.1:8443 only. Running `up`
# again converges again and changes nothing. See docs/demo-and-benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

release=${DOCKYARD_DEMO_RELEASE:-13}
case $release in
    13 | trixie) release=trixie version=13 ;;
    12 | bookworm) release=bookworm version=12 ;;
    *) echo "demo: DOCKYARD_DEMO_RELEASE (make demo RELEASE=…) is 13 (trixie, the default) or 12 (bookworm), not '$release'" >&2; exit 2 ;;
esac
# The inventory reads the same variable (inventories/demo/hosts.yml).
export DOCKYARD_DEMO_CONTAINER=${DOCKYARD_DEMO_CONTAINER:-dockyard-demo}
container=$DOCKYARD_DEMO_CONTAINER
image=${DOCKYARD_BASE_IMAGE:-dockyard/debian-systemd:$release}
host_port=${DOCKYARD_DEMO_PORT:-8443}
name=registry.dockyard.local
# What this host's clients use: the published port, by a name nginx serves (an IP address
# carries no TLS server name, which nginx refuses). The registry's challenge names the
# token realm on this name and port (see docs/demo-and-benchmarks.md).
address=localhost:$host_port
inventory=inventories/demo
password_file=$PWD/$inventory/credentials/demo-password
# The pull-only robot of group_vars/registry.yml. The token service role writes its secret
# once, when it creates the robot, to token_service__robot_credentials_dir as
# <inventory host>-<robot name, $ replaced by _>.json.
robot=robot\$demo+reader
robot_file=$PWD/$inventory/credentials/robots/dockyard-demo-robot_demo+reader.json
ca=$PWD/$inventory/pki/ca.crt
# Where this host's clients look for the CA of a registry: dockerd in /etc/docker/certs.d,
# skopeo and podman (containers-image) in /etc/containers/certs.d; read per request.
trust_files=("/etc/docker/certs.d/$address/ca.crt" "/etc/containers/certs.d/$address/ca.crt")
venv=${VENV:-.venv}
sample=demo/hello:1.0
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$PWD/.build/collections}

say() { printf '\n==> %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

preflight() {
    docker info >/dev/null 2>&1 || die "Docker is not running: run 'make demo' (tools/bootstrap.sh starts it)"
    docker image inspect "$image" >/dev/null 2>&1 || die "no image $image: run 'make demo' (tools/bootstrap.sh builds it)"
    [ -x "$venv/bin/ansible-playbook" ] || die "no $venv/bin/ansible-playbook: run 'make demo' (tools/bootstrap.sh makes the venv)"
    command -v skopeo >/dev/null || die "no skopeo on this host: run 'make demo' (tools/bootstrap.sh installs it)"
}

# Same run settings as the Molecule platform (.config/molecule/config.yml).
start_container() {
    local state running
    state=$(docker inspect -f '{{ .State.Status }}' "$container" 2>/dev/null || true)
    if [ -n "$state" ]; then
        # Labels of the base image (tools/build-base-image.sh); a container is not upgraded in place.
        running=$(docker inspect -f '{{ index .Config.Labels "dockyard.release" }}' "$container")
        [ "$running" = "$release" ] || die "the container $container runs Debian ${running:-(unknown)}, not $release: remove it with 'make demo-destroy' first (the CA and the secrets are kept)"
    fi
    case $state in
        running) say "reusing the running container $container (Debian $release)" ;;
        "")
            say "starting the container $container from $image"
            docker run -d --name "$container" \
                --hostname "$name" \
                --add-host "$name:127.0.0.1" \
                --publish "127.0.0.1:$host_port:443" \
                --cap-add SYS_ADMIN \
                --cgroupns host \
                --volume /sys/fs/cgroup:/sys/fs/cgroup:rw \
                --tmpfs /run --tmpfs /run/lock \
                --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
                --ulimit nofile=20000:20000 \
                --label dockyard.demo=1 \
                "$image" /sbin/init >/dev/null ;;
        *)
            say "starting the stopped container $container"
            docker start "$container" >/dev/null ;;
    esac
    # systemctl cannot answer until PID 1 has its bus up: ask again for two minutes.
    local boot=""
    for _ in $(seq 60); do
        boot=$(docker exec "$container" timeout 60 systemctl is-system-running --wait 2>/dev/null || true)
        case $boot in
            running|degraded) echo "systemd in $container: $boot"; return 0 ;;
        esac
        sleep 2
    done
    die "systemd in $container did not finish booting (state: ${boot:-unknown}); see 'docker logs $container'"
}

make_credentials() {
    if [ ! -s "$password_file" ]; then
        say "generating the password of user demo in $password_file"
        install -d -m 0700 "$(dirname "$password_file")"
        (umask 077 && "$venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$password_file")
    fi
    chmod 0600 "$password_file"
}

converge() {
    say "provisioning $container with playbooks/site.yml"
    "$venv/bin/ansible-playbook" -i "$inventory/hosts.yml" playbooks/site.yml
}

# This host's docker, podman and skopeo trust the demo CA for localhost:PORT only (not
# system-wide); dockerd reads certs.d per connection, no restart.
trust_ca() {
    local file
    for file in "${trust_files[@]}"; do
        cmp -s "$ca" "$file" && continue
        install -D -m 0644 "$ca" "$file"
        echo "installed the demo CA as $file"
    done
}

# skopeo with an auth file of the demo's own (the user's logins are not touched).
host_skopeo() { skopeo "$1" --authfile "$scratch/auth.json" "${@:2}"; }

# Builds the sample image here, pushes it from this host with skopeo to localhost:PORT and
# pulls it back; fails unless both the registry and the pulled copy have the pushed digest.
push_and_pull_sample() {
    say "from this host: skopeo pushes $address/$sample and pulls it back"
    local digest held pulled
    digest=$("$venv/bin/python" tools/oci_image.py "$scratch/image" --tag 1.0 --layers 2 --layer-size 1M --seed demo)
    host_skopeo login -u demo --password-stdin "$address" <"$password_file" >/dev/null
    host_skopeo copy -q "oci:$scratch/image:1.0" "docker://$address/$sample"
    held=$(host_skopeo inspect --format '{{ .Digest }}' "docker://$address/$sample")
    host_skopeo copy -q "docker://$address/$sample" "oci:$scratch/pulled:1.0"
    pulled=$(skopeo inspect --format '{{ .Digest }}' "oci:$scratch/pulled:1.0")
    [ "$held" = "$digest" ] || die "the registry holds $held for $sample, pushed $digest"
    [ "$pulled" = "$digest" ] || die "pulled $pulled for $sample, pushed $digest"
    echo "pushed and pulled back $address/$sample, manifest $digest"
}

# The pull-only robot, from this host: logs in with its secret (from the controller file,
# on stdin), pulls the sample, and must be refused a push.
robot_pull_not_push() {
    say "robot account $robot from this host: pull allowed, push refused"
    [ -s "$robot_file" ] || die "no secret of $robot in $robot_file: the token service saves it only when it creates the robot; add 'rotate: true' to it in $inventory/group_vars/registry.yml for one run"
    local robot_auth=$scratch/robot-auth.json refused
    "$venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["secret"])' "$robot_file" \
        | skopeo login --authfile "$robot_auth" -u "$robot" --password-stdin "$address" >/dev/null
    skopeo copy -q --authfile "$robot_auth" "docker://$address/$sample" "oci:$scratch/robot-pulled:1.0"
    echo "$robot pulled $address/$sample"
    if refused=$(skopeo copy -q --retry-times 0 --authfile "$robot_auth" \
            "oci:$scratch/image:1.0" "docker://$address/demo/hello:robot" 2>&1); then
        die "$robot pushed $address/demo/hello:robot: it should only pull"
    fi
    # skopeo's one fatal line: msg="…", the registry's errors joined by \n.
    refused=${refused#*msg=\"}
    refused=${refused%\"}
    refused=${refused//\\n/ }
    refused=${refused%"${refused##*[![:space:]]}"}
    case $refused in
        *denied*) echo "$robot push refused (as it should be): $refused" ;;
        *) die "$robot push failed, but not for lack of rights: $refused" ;;
    esac
}

usage_notes() {
    cat <<EOF

Dockyard demo registry is up: container $container (Debian $version $release), nginx + Distribution +
the token service, published on this host as https://$address (127.0.0.1:$host_port).
User:  demo (pull, push, delete, catalog on *)   password: $password_file (mode 0600)
Robot: $robot (pull on demo/* only)   secret: $robot_file
CA:    $ca, trusted for $address only: ${trust_files[0]}, ${trust_files[1]}

From this host (the registry's token realm follows the name and port you use: https://$address/auth/token):

  skopeo login -u demo --password-stdin $address < $password_file
  skopeo copy docker://$address/$sample oci:/var/tmp/dockyard-hello:1.0
  skopeo copy oci:/var/tmp/dockyard-hello:1.0 docker://$address/demo/from-skopeo:1.0

  podman login -u demo --password-stdin $address < $password_file
  podman pull $address/$sample
  podman tag $address/$sample $address/demo/from-podman:1.0
  podman push $address/demo/from-podman:1.0

  docker login -u demo --password-stdin $address < $password_file
  docker pull $address/$sample
  docker tag $address/$sample $address/demo/from-docker:1.0
  docker push $address/demo/from-docker:1.0

The robot (its secret on stdin, never on a command line; pulls demo/*, pushes nothing):
  python3 -c 'import json; print(json.load(open("$robot_file"))["secret"])' \\
    | skopeo login -u '$robot' --password-stdin --authfile /var/tmp/dockyard-robot-auth.json $address
  skopeo inspect --authfile /var/tmp/dockyard-robot-auth.json docker://$address/$sample

Inside the host:                    docker exec -it $container bash
Provision again (changes nothing):  make demo RELEASE=$version   (another release: make demo-destroy first)
Benchmark the gateway:              make bench
Tear down:                          make demo-destroy   (then docker/podman/skopeo logout $address)
EOF
}

up() {
    preflight
    start_container
    make_credentials
    converge
    trust_ca
    # Global, not local: the EXIT trap runs after up() has returned.
    scratch=$(mktemp -d /var/tmp/dockyard-demo.XXXXXX)
    trap 'rm -rf "$scratch"' EXIT
    push_and_pull_sample
    robot_pull_not_push
    usage_notes
}

down() {
    local file
    if docker inspect "$container" >/dev/null 2>&1; then
        docker rm -f "$container" >/dev/null
        echo "removed the container $container"
    else
        echo "no container $container"
    fi
    for file in "${trust_files[@]}"; do
        # Only the demo's own CA (cmp fails when the file is absent or another).
        cmp -s "$ca" "$file" 2>/dev/null || continue
        rm -f "$file"
        rmdir "$(dirname "$file")" 2>/dev/null || true
        echo "removed the demo CA from $file"
    done
    cat <<EOF
kept $inventory/pki and $inventory/credentials (delete them for a new CA, password and robot secret);
kept the logins and images of this host's clients: docker/podman/skopeo logout $address, and
docker rmi / podman rmi the $address/demo/… images you pulled
EOF
}

case ${1:-} in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
