#!/usr/bin/env bash
# The Docker image, run the way Airbyte and its clients run it:
#
#   1. the image itself: size, user, labels, entrypoint, no toolchain inside
#   2. scripts/docker_launcher.py: Airbyte's launcher (sh -c wrapper, named pipes,
#      uid 1000, no capabilities, no network), compared with the host binary
#   3. scripts/docker_clients.py: PyAirbyte's Docker executor as three host users,
#      the Kotlin bulk CDK's `docker run`, airbyte-cdk's image tests
#
# Usage: scripts/docker_e2e.sh [--image IMAGE] [--bin HOST_BINARY] [--only image,launcher,clients]
#
# Needs a running Docker engine (DOCKER_HOST), root (it makes root-owned and
# uid-1000 folders, and runs PyAirbyte as other users with setpriv), and PyPI
# for the clients' virtualenv, made on first use (about 2 minutes) in
# DOCKER_CLIENTS_VENV (default /var/cache/destination-duckdb/docker-clients-venv:
# other users run it, so it is outside root's home, from Debian's python3).
#
# Environment (flags win):
#   DESTINATION_DUCKDB_IMAGE  the image (default airbyte/destination-duckdb-rs:<crate version>)
#   DESTINATION_DUCKDB_BIN    the host binary the image is compared with
#                             (default ${CARGO_TARGET_DIR:-~/.cache/destination-duckdb/target}/release/destination-duckdb)
#
# Exit status: 0 if every check held, 1 if one failed, 2 on a setup problem.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)"
repository="$(sed -n 's/^ *dockerRepository: *//p' "$repo/metadata.yaml")"
image="${DESTINATION_DUCKDB_IMAGE:-$repository:$version}"
bin="${DESTINATION_DUCKDB_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/destination-duckdb/target}/release/destination-duckdb}"
venv="${DOCKER_CLIENTS_VENV:-/var/cache/destination-duckdb/docker-clients-venv}"
only="image,launcher,clients"

# What the checks were written against.
PYAIRBYTE_PIN="airbyte==0.71.3"      # brings airbyte-cdk 7.x and duckdb 1.4.3
PYTEST_PIN="pytest==7.4.4"           # airbyte-cdk's [dev] extra wants pytest 7

die() { echo "SETUP ERROR: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --image) image="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run as root"
command -v docker >/dev/null || die "docker is not on PATH"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset})"
docker image inspect "$image" >/dev/null 2>&1 || die "image $image not found: build it with the README's command"
[ -x "$bin" ] || die "host binary $bin not found: cargo build --release"

# Containers a killed earlier run left behind (the scripts name theirs so).
stale="$(docker ps -aq --filter name=dd-launcher- --filter name=dd-sigterm-)"
[ -z "$stale" ] || docker rm -f $stale >/dev/null

venv_ready() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c '
from importlib.metadata import version
assert version("airbyte") == "0.71.3" and version("pytest") == "7.4.4"
import airbyte, duckdb, pytest, airbyte_cdk.test.standard_tests.docker_base' 2>/dev/null
}
if [[ ",$only," == *,clients,* || ",$only," == *,launcher,* ]] && ! venv_ready; then
    echo "== setting up $venv (one-off, about 2 minutes)"
    mkdir -p "$(dirname "$venv")"
    # Debian's python3: the other users PyAirbyte runs as cannot reach root's pyenv.
    [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv" || die "/usr/bin/python3 -m venv $venv failed"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$PYAIRBYTE_PIN" "$PYTEST_PIN" \
        || die "pip install $PYAIRBYTE_PIN $PYTEST_PIN into $venv failed"
    chmod -R a+rX "$venv"
    venv_ready || die "$venv is still not usable after pip install"
fi
py="$venv/bin/python"

failed=0
if [[ ",$only," == *,image,* ]]; then
    echo "== the image: $image"
    check() { if eval "$2"; then echo "  PASS  $1"; else echo "  FAIL  $1"; failed=1; fi; }
    size=$(docker image inspect --format '{{.Size}}' "$image")
    echo "   size $(( size / 1000000 )) MB ($size bytes; the base debian:bookworm-slim $(( $(docker image inspect --format '{{.Size}}' debian:bookworm-slim) / 1000000 )) MB)"
    label() { docker image inspect --format "{{ index .Config.Labels \"$1\" }}" "$image"; }
    check "io.airbyte.version $(label io.airbyte.version) = crate version $version = metadata.yaml dockerImageTag" \
        '[ "$(label io.airbyte.version)" = "$version" ] && grep -q "dockerImageTag: $version\$" "$repo/metadata.yaml"'
    check "io.airbyte.name $(label io.airbyte.name) = metadata.yaml dockerRepository" '[ "$(label io.airbyte.name)" = "$repository" ]'
    check "the binary in the image says version $version" \
        '[ "$(docker run --rm "$image" --version)" = "destination-duckdb $version" ]'
    check "USER is uid 1000, gid 1000, named airbyte" \
        '[ "$(docker run --rm --entrypoint sh "$image" -c "id -u; id -g; id -un" | tr "\n" " ")" = "1000 1000 airbyte " ]'
    check "AIRBYTE_ENTRYPOINT is the ENTRYPOINT" \
        '[ "$(docker image inspect --format "{{json .Config.Entrypoint}}" "$image")" = "[\"/usr/local/bin/destination-duckdb\"]" ] &&
         docker image inspect --format "{{range .Config.Env}}{{println .}}{{end}}" "$image" | grep -qx "AIRBYTE_ENTRYPOINT=/usr/local/bin/destination-duckdb"'
    check "sh, sleep, kill and mv are there (the launcher's wrapper uses them)" \
        'docker run --rm --entrypoint sh "$image" -c "command -v sleep && command -v kill && command -v mv" >/dev/null'
    check "no compiler or Rust toolchain inside" \
        '! docker run --rm --entrypoint sh "$image" -c "command -v cc || command -v gcc || command -v c++ || command -v cargo || command -v rustc || ls /usr/local/cargo /usr/local/rustup" 2>/dev/null'
    check "/local belongs to uid 1000 in the image" \
        '[ "$(docker run --rm --entrypoint stat "$image" -c %u:%g /local)" = "1000:1000" ]'
fi

if [[ ",$only," == *,launcher,* ]]; then
    "$py" "$here/docker_launcher.py" --image "$image" --bin "$bin" || failed=1
fi
if [[ ",$only," == *,clients,* ]]; then
    "$py" "$here/docker_clients.py" --image "$image" || failed=1
fi
exit $failed
