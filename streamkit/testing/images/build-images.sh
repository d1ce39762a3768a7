#!/usr/bin/env bash
# Make sure the container images of the streamkit integration tests exist.
#
#   scripts/build-images.sh            # all test images: kafka, registry
#   scripts/build-images.sh kafka      # only some of: base kafka registry
#
# For each image, in this order:
#   1. present locally (docker image inspect)            -> use it
#   2. `docker pull` of the official image (bounded)      -> tag it with the local name
#   3. build it locally: Maven Central artifacts (fetched with mvn by coordinates) on a
#      Debian JRE base image made with debootstrap + docker import.
# A locally built image carries a label with a hash of its build context and pins; when
# <image>/ or versions.env (beside this script) changes, the next run rebuilds it. Pulled official
# images carry no such label and are always accepted.
#
# Pins: versions.env. Downloads are cached outside the repository.
#
# Environment knobs (all optional):
#   STREAMKIT_CACHE_DIR      build cache (default /var/cache/streamkit/build, or
#                            ~/.cache/streamkit/build when that is not writable)
#   STREAMKIT_IMAGE_PULL=0   do not try `docker pull`
#   STREAMKIT_PULL_TIMEOUT   seconds for one pull attempt (default 20)
#   STREAMKIT_REBUILD=1      rebuild the named images even if present
#   STREAMKIT_DEBIAN_MIRROR  Debian mirror for debootstrap (default: from the apt sources)
set -euo pipefail

# The build contexts sit beside this script (shipped inside the streamkit package).
DOCKER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.env
source "${DOCKER_DIR}/versions.env"

PULL="${STREAMKIT_IMAGE_PULL:-1}"
PULL_TIMEOUT="${STREAMKIT_PULL_TIMEOUT:-20}"
REBUILD="${STREAMKIT_REBUILD:-0}"
HASH_LABEL=io.streamkit.build-hash

log() { printf 'build-images: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ -n "${STREAMKIT_CACHE_DIR:-}" ]]; then
    CACHE_DIR="${STREAMKIT_CACHE_DIR}"
elif mkdir -p /var/cache/streamkit/build 2>/dev/null && [[ -w /var/cache/streamkit/build ]]; then
    CACHE_DIR=/var/cache/streamkit/build
else
    CACHE_DIR="${XDG_CACHE_HOME:-${HOME}/.cache}/streamkit/build"
fi
mkdir -p "${CACHE_DIR}"

command -v docker >/dev/null 2>&1 || die "docker CLI not found (run scripts/ensure-docker.sh first)"
timeout 15 docker info >/dev/null 2>&1 || die "no Docker engine answers (run scripts/ensure-docker.sh first)"

# One build at a time per cache (parallel test sessions may call this script together).
exec 9>"${CACHE_DIR}/.lock"
if ! flock -n 9; then
    log "another build-images.sh holds ${CACHE_DIR}/.lock; waiting (max 30 min)"
    flock -w 1800 9 || die "timed out waiting for ${CACHE_DIR}/.lock"
fi

# ---------------------------------------------------------------------------------------
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

image_label() {
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# context_hash DIR [STRING...]: hash of the files of DIR (README.md excluded) and the strings.
context_hash() {
    local dir="$1"; shift
    {
        (cd "$dir" && find . -type f ! -name README.md -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
        printf '%s\n' "$@"
    } | sha256sum | cut -c1-16
}

# usable IMAGE HASH [FORCE]: the image is present, not an outdated local build, and FORCE
# (a forced rebuild, STREAMKIT_REBUILD=1 for a named target) is not 1.
usable() {
    local image="$1" want="$2" force="${3:-0}" have
    image_exists "$image" || return 1
    [[ "$force" == 1 ]] && return 1
    have="$(image_label "$image" "$HASH_LABEL")"
    if [[ -n "$have" && "$have" != "<no value>" && "$have" != "$want" ]]; then
        log "$image is an outdated local build (hash $have, want $want): rebuilding"
        return 1
    fi
    return 0
}

try_pull() {
    local official="$1" local_name="$2"
    [[ "$PULL" == 1 && -n "$official" ]] || return 1
    log "trying docker pull $official (max ${PULL_TIMEOUT}s)"
    if timeout "$PULL_TIMEOUT" docker pull -q "$official" >/dev/null 2>"${CACHE_DIR}/pull.err"; then
        docker tag "$official" "$local_name"
        log "pulled $official, tagged $local_name"
        return 0
    fi
    log "pull of $official failed: $(tail -n 1 "${CACHE_DIR}/pull.err" 2>/dev/null || echo timeout); building locally"
    return 1
}

# Debian mirror from the machine's apt sources (deb822 *.sources or one-line *.list);
# the first non-security "deb" entry wins.
debian_mirror() {
    if [[ -n "${STREAMKIT_DEBIAN_MIRROR:-}" ]]; then
        printf '%s\n' "${STREAMKIT_DEBIAN_MIRROR}"
        return 0
    fi
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        # Stanzas are separated by blank lines; keep "Types: deb" stanzas, skip security suites.
        uri="$(awk '
            function flush() {
                if (types ~ /(^|[ \t])deb([ \t]|$)/ && suites !~ /security/ && enabled !~ /^[ \t]*no/ && uris != "") {
                    split(uris, u, /[ \t]+/); print u[1]; found = 1; exit
                }
                types = ""; suites = ""; uris = ""; enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "types:"   { sub(/^[^:]*:[ \t]*/, ""); types = $0 }
            tolower($1) == "uris:"    { sub(/^[^:]*:[ \t]*/, ""); uris = $0 }
            tolower($1) == "suites:"  { sub(/^[^:]*:[ \t]*/, ""); suites = $0 }
            tolower($1) == "enabled:" { sub(/^[^:]*:[ \t]*/, ""); enabled = tolower($0) }
            END { if (!found) flush() }
        ' "$f")"
        if [[ -n "$uri" ]]; then printf '%s\n' "$uri"; return 0; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        # deb [options] URI suite components...
        uri="$(awk '
            $1 == "deb" {
                i = 2
                if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i+1) ~ /security/) next
                print $i; exit
            }
        ' "$f")"
        if [[ -n "$uri" ]]; then printf '%s\n' "$uri"; return 0; fi
    done
    return 1
}

# ---------------------------------------------------------------------------------------
build_base() {
    local hash="$1" mirror rootfs java_home start=$SECONDS
    [[ "$(id -u)" -eq 0 ]] || die "building ${BASE_IMAGE} needs root (debootstrap)"
    command -v debootstrap >/dev/null 2>&1 || {
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    }
    mirror="$(debian_mirror)" || die "no Debian mirror in the apt sources; set STREAMKIT_DEBIAN_MIRROR"
    rootfs="${CACHE_DIR}/rootfs.$$"
    # shellcheck disable=SC2064
    trap "rm -rf '${rootfs}'" EXIT
    rm -rf "$rootfs"
    log "debootstrap ${DEBIAN_SUITE} (+${JRE_PACKAGE}) from the apt sources' mirror into ${rootfs}"
    debootstrap --variant=minbase --include="${JRE_PACKAGE}" "${DEBIAN_SUITE}" "$rootfs" "$mirror" \
        >"${CACHE_DIR}/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see ${CACHE_DIR}/debootstrap.log"
    # Trim what a test image never needs.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
        "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/debootstrap
    # (/usr/bin/java is an absolute symlink chain through /etc/alternatives: do not resolve it
    # on the host.)
    java_home="$(cd "$rootfs" && for j in usr/lib/jvm/*/bin/java; do [[ -x "$j" && ! -L "${j%/bin/java}" ]] && { printf '/%s\n' "${j%/bin/java}"; break; }; done)"
    [[ -n "$java_home" ]] || die "no java in the debootstrap root file system"
    log "docker import -> ${BASE_IMAGE}"
    tar -C "$rootfs" -c . | docker import \
        -c "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        -c "ENV LANG=C.UTF-8" \
        -c "ENV JAVA_HOME=${java_home}" \
        -c "LABEL ${HASH_LABEL}=${hash}" \
        -c 'CMD ["/bin/bash"]' \
        - "${BASE_IMAGE}" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    log "built ${BASE_IMAGE} in $((SECONDS - start))s ($(docker run --rm --network none "${BASE_IMAGE}" java -version 2>&1 | grep -m1 version))"
}

base_hash() { printf '%s\n' "$DEBIAN_SUITE" "$JRE_PACKAGE" | sha256sum | cut -c1-16; }

ensure_base() {
    local hash
    hash="$(base_hash)"
    if usable "${BASE_IMAGE}" "$hash" "${REBUILD_BASE:-0}"; then
        log "${BASE_IMAGE} present"
        return 0
    fi
    build_base "$hash"
}

# stage_context NAME: fresh copy of NAME/ in the cache, printed path.
stage_context() {
    local ctx="${CACHE_DIR}/$1/context"
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp -a "${DOCKER_DIR}/$1/." "$ctx/"
    printf '%s\n' "$ctx"
}

# link_into SRC DEST: hard link (same file system) or copy.
link_into() {
    cp -al "$1" "$2" 2>/dev/null || cp -a "$1" "$2"
}

build_kafka() {
    local hash="$1" libs ctx start=$SECONDS
    command -v mvn >/dev/null 2>&1 || die "mvn (Maven) is needed to fetch the Kafka jars: apt-get install maven"
    # Keyed by the pom and the pins, so that a change of the entrypoint does not refetch jars.
    libs="${CACHE_DIR}/kafka/libs-$( { cat "${DOCKER_DIR}/kafka/pom.xml"; printf '%s\n' \
        "${KAFKA_VERSION}" "${KAFKA_SCALA_VERSION}" "${LOG4J_VERSION}"; } | sha256sum | cut -c1-12)"
    if [[ ! -f "$libs/.complete" ]]; then
        log "fetching org.apache.kafka:kafka_${KAFKA_SCALA_VERSION}:${KAFKA_VERSION} runtime jars with mvn"
        rm -rf "$libs"
        mkdir -p "${CACHE_DIR}/kafka/pom"
        cp "${DOCKER_DIR}/kafka/pom.xml" "${CACHE_DIR}/kafka/pom/pom.xml"
        (cd "${CACHE_DIR}/kafka/pom" && mvn -q -B dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$libs" \
            -Dkafka.version="${KAFKA_VERSION}" -Dscala.binary.version="${KAFKA_SCALA_VERSION}" \
            -Dlog4j.version="${LOG4J_VERSION}") >"${CACHE_DIR}/kafka/mvn.log" 2>&1 ||
            { tail -n 30 "${CACHE_DIR}/kafka/mvn.log" >&2; die "mvn could not fetch the Kafka jars"; }
        ls "$libs"/kafka_"${KAFKA_SCALA_VERSION}"-"${KAFKA_VERSION}".jar >/dev/null
        touch "$libs/.complete"
        # Jar sets of older pins are no longer needed.
        find "${CACHE_DIR}/kafka" -maxdepth 1 -name 'libs-*' ! -path "$libs" -exec rm -rf {} +
    fi
    ensure_base
    ctx="$(stage_context kafka)"
    mkdir -p "$ctx/libs"
    local jar
    for jar in "$libs"/*.jar; do link_into "$jar" "$ctx/libs/"; done
    log "docker build -> ${KAFKA_IMAGE}"
    docker build -q --label "${HASH_LABEL}=${hash}" \
        --build-arg BASE_IMAGE="${BASE_IMAGE}" --build-arg KAFKA_VERSION="${KAFKA_VERSION}" \
        -t "${KAFKA_IMAGE}" "$ctx" >"${CACHE_DIR}/kafka/build.log" 2>&1 ||
        { tail -n 30 "${CACHE_DIR}/kafka/build.log" >&2; die "docker build of ${KAFKA_IMAGE} failed"; }
    rm -rf "$ctx"
    log "built ${KAFKA_IMAGE} in $((SECONDS - start))s"
}

# build_from_archive CONTEXT CACHE IMAGE ARTIFACT ARCHIVE_IN_CONTEXT HASH [BUILD_ARG...]: fetch a
# Maven Central archive (G:A:V:type[:classifier]) into the cache folder CACHE once, link it into
# a staging copy of CONTEXT/ as ARCHIVE_IN_CONTEXT, then `docker build` IMAGE on the base.
build_from_archive() {
    local context="$1" name="$2" image="$3" artifact="$4" in_context="$5" hash="$6"
    local archive ctx start=$SECONDS
    shift 6
    local _group artifact_id version type classifier file
    IFS=: read -r _group artifact_id version type classifier <<<"$artifact"
    file="${artifact_id}-${version}${classifier:+-${classifier}}.${type}"
    archive="${CACHE_DIR}/${name}/${file}"
    if [[ ! -s "$archive" ]]; then
        command -v mvn >/dev/null 2>&1 || die "mvn (Maven) is needed to fetch ${artifact}: apt-get install maven"
        log "fetching ${artifact} with mvn"
        mkdir -p "${CACHE_DIR}/${name}"
        # dependency:copy needs no project; run it where no pom.xml is.
        (cd "${CACHE_DIR}/${name}" && mvn -q -B dependency:copy -Dartifact="${artifact}" \
            -DoutputDirectory="${CACHE_DIR}/${name}.part") >"${CACHE_DIR}/${name}/mvn.log" 2>&1 ||
            { tail -n 30 "${CACHE_DIR}/${name}/mvn.log" >&2; die "mvn could not fetch ${artifact}"; }
        mv "${CACHE_DIR}/${name}.part/${file}" "$archive"
        rm -rf "${CACHE_DIR}/${name}.part"
    fi
    ensure_base
    ctx="$(stage_context "$context")"
    link_into "$archive" "$ctx/${in_context}"
    local build_args=(--build-arg BASE_IMAGE="${BASE_IMAGE}")
    local arg
    for arg in "$@"; do build_args+=(--build-arg "$arg"); done
    log "docker build -> ${image}"
    docker build -q --label "${HASH_LABEL}=${hash}" "${build_args[@]}" \
        -t "${image}" "$ctx" >"${CACHE_DIR}/${name}/build.log" 2>&1 ||
        { tail -n 30 "${CACHE_DIR}/${name}/build.log" >&2; die "docker build of ${image} failed"; }
    rm -rf "$ctx"
    log "built ${image} in $((SECONDS - start))s"
}

build_registry() {
    build_from_archive apicurio-registry apicurio "${APICURIO_IMAGE}" \
        "io.apicurio:apicurio-registry-app:${APICURIO_VERSION}:tar.gz:all" \
        apicurio-registry-app-all.tar.gz "$1" APICURIO_VERSION="${APICURIO_VERSION}"
}

build_keycloak() {
    build_from_archive keycloak keycloak "${KEYCLOAK_IMAGE}" \
        "org.keycloak:keycloak-quarkus-dist:${KEYCLOAK_VERSION}:tar.gz" \
        keycloak-quarkus-dist.tar.gz "$1" KEYCLOAK_VERSION="${KEYCLOAK_VERSION}"
}

# ensure_image LOCAL OFFICIAL HASH BUILDER
ensure_image() {
    local local_name="$1" official="$2" hash="$3" builder="$4"
    if usable "$local_name" "$hash" "$REBUILD"; then
        log "$local_name present"
        return 0
    fi
    if [[ "$REBUILD" != 1 ]] && ! image_exists "$local_name" && try_pull "$official" "$local_name"; then
        return 0
    fi
    "$builder" "$hash"
}

# ---------------------------------------------------------------------------------------
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(kafka registry)
REBUILD_BASE=0
if [[ "$REBUILD" == 1 && " ${targets[*]} " == *" base "* ]]; then
    REBUILD_BASE=1
fi
for target in "${targets[@]}"; do
    case "$target" in
        base) ensure_base ;;
        kafka)
            ensure_image "${KAFKA_IMAGE}" "${KAFKA_OFFICIAL_IMAGE}" \
                "$(context_hash "${DOCKER_DIR}/kafka" "${BASE_IMAGE}" "${KAFKA_VERSION}" \
                    "${KAFKA_SCALA_VERSION}" "${LOG4J_VERSION}")" build_kafka
            ;;
        registry)
            ensure_image "${APICURIO_IMAGE}" "${APICURIO_OFFICIAL_IMAGE}" \
                "$(context_hash "${DOCKER_DIR}/apicurio-registry" "${BASE_IMAGE}" "${APICURIO_VERSION}")" \
                build_registry
            ;;
        keycloak)
            ensure_image "${KEYCLOAK_IMAGE}" "${KEYCLOAK_OFFICIAL_IMAGE}" \
                "$(context_hash "${DOCKER_DIR}/keycloak" "${BASE_IMAGE}" "${KEYCLOAK_VERSION}")" \
                build_keycloak
            ;;
        *) die "unknown image '$target' (known: base kafka registry keycloak)" ;;
    esac
done
# Drop the untagged leftovers of earlier local builds (only ours, only unused ones).
docker image prune -f --filter "label=${HASH_LABEL}" >/dev/null 2>&1 || true
log "ready: ${targets[*]}"
