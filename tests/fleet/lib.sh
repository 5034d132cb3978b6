# Shared by the fleet scripts: where the cache lives, how content keys are
# computed, and how to talk to the operator. Sourced, never executed.

set -euo pipefail

FLEET_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FLEET_CACHE="${NIGHTSHIFT_FLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nightshift/fleet}"
FLEET_SUITE="bookworm"
FLEET_IMAGE_PREFIX="${NIGHTSHIFT_FLEET_IMAGE_PREFIX:-nightshift-fleet}"
FLEET_LABEL="io.nightshift.fleet"

say() { printf 'fleet: %s\n' "$*" >&2; }
die() { printf 'fleet: error: %s\n' "$*" >&2; exit 1; }

# The Debian mirror this machine already uses, read from its apt sources at
# run time so that no host name is ever written into the repository.
fleet_mirror() {
    if [[ -n "${NIGHTSHIFT_FLEET_MIRROR:-}" ]]; then
        printf '%s\n' "$NIGHTSHIFT_FLEET_MIRROR"
        return
    fi
    local uri
    local sources lists
    sources=(/etc/apt/sources.list.d/*.sources) lists=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
    # Only files that exist: mawk gives up on the first missing one.
    local f existing=()
    for f in "${sources[@]}"; do [[ -f "$f" ]] && existing+=("$f"); done
    sources=("${existing[@]}")
    existing=()
    for f in "${lists[@]}"; do [[ -f "$f" ]] && existing+=("$f"); done
    lists=("${existing[@]}")
    # deb822 stanzas whose Suites list the plain suite name, then one-line
    # "deb [options] URI SUITE COMPONENTS" entries.
    uri="$(awk -v suite="$FLEET_SUITE" '
        FNR == 1 || /^[[:space:]]*$/ { u = ""; s = 0 }
        /^URIs:/ { u = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) s = 1 }
        u != "" && s { print u; exit }' "${sources[@]}" /dev/null 2>/dev/null || true)"
    if [[ -z "$uri" ]]; then
        uri="$(awk -v suite="$FLEET_SUITE" '
            $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                          if ($(i + 1) == suite) { print $i; exit } }' "${lists[@]}" /dev/null 2>/dev/null || true)"
    fi
    if [[ -z "$uri" ]]; then
        # A machine on another release: any Debian archive URI serves bookworm too.
        uri="$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ { print $2; exit }
                    $1 == "deb" && $0 ~ /\/debian\/? / { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
               "${sources[@]}" "${lists[@]}" /dev/null 2>/dev/null || true)"
    fi
    [[ -n "$uri" ]] || die "no Debian apt source found in /etc/apt; set NIGHTSHIFT_FLEET_MIRROR"
    printf '%s\n' "$uri"
}

# A short, stable key over everything that determines an artefact.
content_key() { sha256sum | cut -c1-16; }

need() {
    local cmd
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' is missing; run tests/install-deps as root"
    done
}

# Where a fleet keeps its manifest, known_hosts and scratch files.
fleet_state() { printf '%s/state/%s\n' "$FLEET_CACHE" "$1"; }

fleet_address() {
    docker inspect -f "{{(index .NetworkSettings.Networks \"$2\").IPAddress}}" "$1"
}

# Waits until sshd in the container has its keys and listens on port 22.
fleet_wait_ssh() {
    local ctr="$1" seconds="$2" i
    for ((i = 0; i < seconds * 5; i++)); do
        if docker exec "$ctr" sh -c 'test -s /etc/ssh/ssh_host_ed25519_key.pub && (ss -Hltn "sport = :22" | grep -q .)' 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    die "sshd on $ctr did not come up within ${seconds}s; see: docker logs $ctr"
}

# Whether sshd at ADDRESS greets this machine with its banner within a second:
# the host as the controller sees it, across the fleet network.
fleet_answers() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/22" && IFS= read -r -t 1 line <&3 && [[ "$line" == SSH-* ]]' \
        _ "$1" 2>/dev/null
}

# fleet_wait_reachable ADDRESS yes|no SECONDS: waits until sshd at ADDRESS
# answers (yes) or no longer does (no), so that an action returns only when
# the host is really in its new state.
fleet_wait_reachable() {
    local address="$1" want="$2" seconds="$3" deadline
    deadline=$((SECONDS + seconds))
    while ((SECONDS < deadline)); do
        if fleet_answers "$address"; then
            [[ "$want" == yes ]] && return 0
        else
            [[ "$want" == no ]] && return 0
        fi
        sleep 0.2
    done
    if [[ "$want" == yes ]]; then
        die "sshd at $address does not answer from this machine ${seconds}s on"
    fi
    die "sshd at $address still answers from this machine ${seconds}s on"
}
