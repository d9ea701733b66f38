#!/usr/bin/env bash
# The local demo registry: one Debian 12 systemd container provisioned with site.yml.
#
#   tools/demo.sh up     start (or reuse) the container `dockyard-demo`, provision it with
#                        inventories/demo/hosts.yml (token authentication, the default),
#                        push and pull a sample image, show that the pull-only robot
#                        account can pull it and cannot push
#   tools/demo.sh down   remove the container (the CA, the password and the robot's secret
#                        stay in inventories/demo/)
#
# `make demo` runs tools/bootstrap.sh first (Docker, .venv, base image). The container's
# port 443 is published on 127.0.0.1:8443 only. Running `up` again converges again and
# changes nothing. See docs/demo-and-benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

container=${DOCKYARD_DEMO_CONTAINER:-dockyard-demo}
image=${DOCKYARD_BASE_IMAGE:-dockyard/debian-systemd:bookworm}
host_port=${DOCKYARD_DEMO_PORT:-8443}
name=registry.dockyard.local
inventory=inventories/demo
password_file=$inventory/credentials/demo-password
# The pull-only robot of group_vars/registry.yml. The token service role writes its secret
# once, when it creates the robot, to token_service__robot_credentials_dir as
# <inventory host>-<robot name, $ replaced by _>.json.
robot=robot\$demo+reader
robot_file=$inventory/credentials/robots/dockyard-demo-robot_demo+reader.json
# Inside the container: the robot's own skopeo auth file (the demo user's is the default one).
robot_auth=/root/.config/dockyard-demo/robot-reader-auth.json
ca=$inventory/pki/ca.crt
# --cert-dir of containers-image clients: only ca.crt (the pki directory also holds keys
# without client certificates, which skopeo refuses).
cert_dir=$inventory/pki/client
venv=${VENV:-.venv}
sample=demo/hello:1.0
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$PWD/.build/collections}

say() { printf '\n==> %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
in_demo() { docker exec "$container" "$@"; }
# A token from the gateway's token endpoint, asked for from the host through the
# published port (the realm the registry names, https://$name/auth/token, is the
# container's own port 443, which the host cannot reach by that name). $1: scope.
# The password goes to curl on stdin (a config line), not on its command line.
host_token() {
    printf 'user = "demo:%s"\n' "$(cat "$password_file")" \
        | curl -sf -K - --cacert "$ca" -G "https://localhost:$host_port/auth/token" \
            --data-urlencode "service=$name" --data-urlencode "scope=$1" \
        | "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

preflight() {
    docker info >/dev/null 2>&1 || die "Docker is not running: run 'make demo' (tools/bootstrap.sh starts it)"
    docker image inspect "$image" >/dev/null 2>&1 || die "no image $image: run 'make demo' (tools/bootstrap.sh builds it)"
    [ -x "$venv/bin/ansible-playbook" ] || die "no $venv/bin/ansible-playbook: run 'make demo' (tools/bootstrap.sh makes the venv)"
}

# Same run settings as the Molecule platform (molecule/default/molecule.yml).
start_container() {
    local state
    state=$(docker inspect -f '{{ .State.Status }}' "$container" 2>/dev/null || true)
    case $state in
        running) say "reusing the running container $container" ;;
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
    install -d -m 0755 "$cert_dir"
    install -m 0644 "$ca" "$cert_dir/ca.crt"
}

# Builds the sample image on the controller, copies it in, pushes it with skopeo and
# pulls it back; fails unless the registry returns the same manifest digest.
push_and_pull_sample() {
    say "pushing and pulling the sample image $name/$sample"
    local digest pulled
    # Global, not local: the EXIT trap runs after this function has returned.
    sample_layout=$(mktemp -d /var/tmp/dockyard-demo-image.XXXXXX)
    trap 'rm -rf "$sample_layout"' EXIT
    local layout=$sample_layout
    digest=$("$venv/bin/python" tools/oci_image.py "$layout/image" --tag 1.0 --layers 2 --layer-size 1M --seed demo)
    in_demo rm -rf /root/demo-image /root/demo-pulled
    docker cp -q "$layout/image" "$container:/root/demo-image"
    docker exec -i "$container" skopeo login -u demo --password-stdin "$name" <"$password_file" >/dev/null
    in_demo skopeo copy -q oci:/root/demo-image:1.0 "docker://$name/$sample"
    in_demo skopeo copy -q "docker://$name/$sample" oci:/root/demo-pulled:1.0
    pulled=$(in_demo skopeo inspect --format '{{ .Digest }}' "docker://$name/$sample")
    [ "$pulled" = "$digest" ] || die "the registry holds $pulled for $sample, pushed $digest"
    echo "pushed and pulled back $sample, manifest $digest"
    # The host's side: the published port, TLS checked against the demo CA, the Bearer
    # flow done by hand (token endpoint, then the registry with the token).
    local token
    token=$(host_token "repository:demo/hello:pull") \
        || die "no token from https://localhost:$host_port/auth/token for the host"
    curl -sf -o /dev/null --cacert "$ca" -H "Authorization: Bearer $token" \
        "https://localhost:$host_port/v2/demo/hello/tags/list" \
        || die "the registry does not answer on https://localhost:$host_port from the host"
    echo "the host reaches https://localhost:$host_port (127.0.0.1:$host_port) with the demo CA and a token"
}

# The pull-only robot: logs in with its secret (from the controller, over stdin, into an
# auth file of its own), pulls the sample, and must be refused a push.
robot_pull_not_push() {
    say "robot account $robot: pull allowed, push refused"
    [ -s "$robot_file" ] || die "no secret of $robot in $robot_file: the token service saves it only when it creates the robot; add 'rotate: true' to it in $inventory/group_vars/registry.yml for one run"
    in_demo install -d -m 0700 "$(dirname "$robot_auth")"
    "$venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["secret"])' "$robot_file" \
        | docker exec -i "$container" skopeo login --authfile "$robot_auth" -u "$robot" --password-stdin "$name" >/dev/null
    in_demo skopeo copy -q --authfile "$robot_auth" "docker://$name/$sample" oci:/root/demo-robot-pulled:1.0
    echo "$robot pulled $name/$sample"
    local refused
    if refused=$(in_demo skopeo copy -q --retry-times 0 --authfile "$robot_auth" \
            oci:/root/demo-image:1.0 "docker://$name/demo/hello:robot" 2>&1); then
        die "$robot pushed $name/demo/hello:robot: it should only pull"
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
    in_demo rm -rf /root/demo-robot-pulled
}

usage_notes() {
    cat <<EOF

Dockyard demo registry is up: container $container, https://$name (nginx + Distribution),
token authentication: the token service at https://$name/auth/token decides per repository.
User:  demo (pull, push, delete, catalog on *)   password: $password_file (mode 0600)
Robot: $robot (pull on demo/* only)   secret: $robot_file
       (mode 0600: name, secret, docker_config; shown by the token service once, when it made the robot)
CA:    $ca

Inside the container (the CA is trusted there; skopeo is logged in as demo already, and as
the robot in $robot_auth):
  docker exec -it $container bash
  skopeo inspect docker://$name/$sample
  skopeo copy oci:/root/demo-image:1.0 docker://$name/demo/other:1.0
  podman pull $name/$sample
  skopeo inspect --authfile $robot_auth docker://$name/$sample            # the robot pulls
  skopeo copy --authfile $robot_auth oci:/root/demo-image:1.0 docker://$name/demo/x:1   # refused: denied
The robot from elsewhere (secret on stdin, never on a command line):
  python3 -c 'import json; print(json.load(open("$robot_file"))["secret"])' \\
    | docker exec -i $container skopeo login -u '$robot' --password-stdin $name

From this host, through 127.0.0.1:$host_port (use the name localhost so TLS carries a server name).
The registry's Bearer challenge names the realm https://$name/auth/token, port 443 of the
container, which this host cannot reach by that name: clients that follow it (skopeo,
podman, docker) work inside the container. curl does the token flow by hand:
  token=\$(curl -s --cacert $ca -u "demo:\$(cat $password_file)" -G https://localhost:$host_port/auth/token \\
      --data-urlencode service=$name --data-urlencode 'scope=registry:catalog:*' | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
  curl --cacert $ca -H "Authorization: Bearer \$token" https://localhost:$host_port/v2/_catalog
  curl --cacert $ca --resolve $name:$host_port:127.0.0.1 -H "Authorization: Bearer \$token" https://$name:$host_port/v2/_catalog

Provision again (changes nothing):  tools/demo.sh up   (or: make demo)
Benchmark the gateway:              make bench
Tear down:                          make demo-destroy  (tools/demo.sh down; rm -rf $inventory/pki $inventory/credentials for new secrets)
Switch to htpasswd (nginx checks bcrypt, every user may do everything): see docs/demo-and-benchmarks.md
EOF
}

up() {
    preflight
    start_container
    make_credentials
    converge
    push_and_pull_sample
    robot_pull_not_push
    usage_notes
}

down() {
    if docker inspect "$container" >/dev/null 2>&1; then
        docker rm -f "$container" >/dev/null
        echo "removed the container $container"
    else
        echo "no container $container"
    fi
    echo "kept $inventory/pki and $inventory/credentials (delete them for a new CA, password and robot secret)"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
