#!/bin/sh
# kiln's benchmark harness (run as root on a Debian machine; see docs/benchmarks.md).
#   bench/run.sh [RUNS]          W1, W2 and the snapshot benchmark
#   ONLY=W5 bench/run.sh [RUNS]   W5 only (rebuild from the layer cache)
#   ONLY=W4 bench/run.sh [RUNS]   W4 only: kiln (parallel stages, and
#                                 --jobs 1) against buildah, interleaved
#   ONLY=W3 bench/run.sh [RUNS]   W3 (a ~350 MiB layer): kiln against
#                                 buildah, time and peak RSS, interleaved
#   ONLY=LEVELS bench/run.sh [RUNS] W3 with gzip levels 1, 3, 6 and zstd 3:
#                                 build+push time and the layer's size
#   ONLY=MOUNT bench/run.sh [RUNS] a RUN with a cache mount: its first run
#                                 (empty cache) against a rerun after a
#                                 context edit (the cache kept), interleaved
# Starts a registry on 127.0.0.1:5000, builds the bases the workloads in
# bench/workloads expect (debian:bookworm from debootstrap, bigbase),
# then times cold builds+pushes of W1 to W4: kiln as root, buildah
# (--isolation chroot --layers) and, with BUILDKIT_SH naming BuildKit
# v0.32.2's buildkit.sh, BuildKit as buildctl-daemonless.sh runs it;
# BENCH_TMPFS=1 puts every tool's state on a tmpfs, BENCH_SBOM=1 adds
# kiln with --sbom beside, BENCH_WORKLOADS
# chooses workloads, BENCH_ONLY_TABLE=1 stops after the table.
# It also measures the snapshot of a one-file RUN on a 10k-file and a
# 200k-file root. Prints a Markdown report.
set -eu
RUNS=${1:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
WORKLOADS=${KILN_WORKLOADS:-$HERE/bench/workloads}
STATE=${KILN_BENCH_DIR:-/tmp/kiln-bench}
REG=127.0.0.1:5000
mkdir -p "$STATE"
chmod 777 "$STATE"
cd "$HERE"
cargo build --release -q -p kiln
KILN=$HERE/target/release/kiln

grep -q '^nobody:' /etc/subuid || echo "nobody:200000:65536" >> /etc/subuid
grep -q '^nobody:' /etc/subgid || echo "nobody:200000:65536" >> /etc/subgid

if ! curl -fsS "http://$REG/v2/" >/dev/null 2>&1; then
    rm -rf "$STATE/registry"
    cat > "$STATE/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $STATE/registry}, delete: {enabled: true}}
http: {addr: $REG}
YML
    docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
    sleep 1
fi

NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=$STATE"
as_nobody() { $NOBODY "$@"; }
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Bases.
if [ ! -f "$STATE/debian.tar" ]; then
    rm -rf "$STATE/debian-root"
    debootstrap --variant=minbase bookworm "$STATE/debian-root" http://deb.debian.org/debian >/dev/null
    tar --numeric-owner -C "$STATE/debian-root" -cf "$STATE/debian.tar" .
    rm -rf "$STATE/debian-root"
fi
mkdir -p "$STATE/ctx-debian"
ln -f "$STATE/debian.tar" "$STATE/ctx-debian/rootfs.tar"
printf 'FROM scratch\nADD rootfs.tar /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n' > "$STATE/ctx-debian/Dockerfile"
have() { curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/$1/manifests/latest" 2>/dev/null || curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/$1/manifests/bookworm" 2>/dev/null; }
have debian || "$KILN" build -c "$STATE/ctx-debian" -d $REG/debian:bookworm --insecure-registry $REG --kiln-dir "$STATE/kiln-prep" -v warn
[ -n "${ONLY:-}" ] || have bigbase || "$KILN" build -c "$WORKLOADS/base-bigbase" -d $REG/bigbase:latest --insecure-registry $REG --kiln-dir "$STATE/kiln-prep" -v warn
mkdir -p "$STATE/ctx-small"
cat > "$STATE/ctx-small/Dockerfile" <<DF
FROM $REG/debian:bookworm
RUN mkdir -p /opt/small && cd /opt/small && for d in \$(seq 1 10); do mkdir d\$d; for f in \$(seq 1 1000); do echo "\$d \$f" > d\$d/f\$f; done; done
DF
[ -n "${ONLY:-}" ] || have small10k || "$KILN" build -c "$STATE/ctx-small" -d $REG/small10k:latest --insecure-registry $REG --kiln-dir "$STATE/kiln-prep" -v warn

kiln_time() { # workload [extra flags]
    w=$1
    shift
    rm -rf "$STATE/kiln-cold"
    t0=$(now)
    as_nobody "$KILN" build -c "$WORKLOADS/$w" -d "$REG/bench/$(echo $w | tr A-Z a-z):kiln" --insecure-registry $REG --kiln-dir "$STATE/kiln-cold" -v warn "$@"
    t1=$(now)
    echo "$t1 - $t0" | bc
}

buildah_time() { # workload
    buildah rm -a >/dev/null 2>&1 || true
    buildah rmi -a -f >/dev/null 2>&1 || true
    t0=$(now)
    buildah bud -q --isolation chroot --layers --tls-verify=false -t "$REG/bench/$(echo $1 | tr A-Z a-z):buildah" "$WORKLOADS/$1" >/dev/null
    buildah push -q --tls-verify=false "$REG/bench/$(echo $1 | tr A-Z a-z):buildah" >/dev/null
    t1=$(now)
    echo "$t1 - $t0" | bc
}

w5() {
    # W5: W1 and W4 rebuilt on an empty machine from the registry cache,
    # after editing W4's app.txt; the cache was filled by a first build.
    rm -rf "$STATE/w4-edited" && cp -r "$WORKLOADS/W4-multistage" "$STATE/w4-edited"
    chmod -R a+rX "$STATE/w4-edited"
    for w in "$WORKLOADS/W1-small" "$WORKLOADS/W4-multistage"; do
        rm -rf "$STATE/kiln-fill"
        as_nobody "$KILN" build -c "$w" -d "$REG/bench/w5-$(basename $w | tr A-Z a-z):kiln" --insecure-registry $REG \
            --kiln-dir "$STATE/kiln-fill" --cache --cache-copy-layers --cache-repo $REG/bench/kiln-cache -v warn
    done
    # Base-layer bytes downloaded, from the registry's access log: the
    # Debian layer's GETs during the timed runs, times its size.
    base_layer=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/debian/manifests/bookworm" | jq -r '.layers[0].digest')
    base_size=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/debian/manifests/bookworm" | jq -r '.layers[0].size')
    base_gets() { grep -c "\"GET /v2/[^ ]*/blobs/$base_layer HTTP[^\"]*\" 200 " "$STATE/registry.log" || true; }
    gets_before=$(base_gets)
    k=$(for i in $(seq 1 "$RUNS"); do
        rm -rf "$STATE/kiln-cold"
        # A new edit every run: the last COPY misses each time.
        echo "edited $(date +%s%N)" >> "$STATE/w4-edited/app.txt"
        t0=$(now)
        for w in "$WORKLOADS/W1-small" "$STATE/w4-edited"; do
            as_nobody "$KILN" build -c "$w" -d "$REG/bench/w5-$(basename $w | tr A-Z a-z):kiln" --insecure-registry $REG \
                --kiln-dir "$STATE/kiln-cold" --cache --cache-copy-layers --cache-repo $REG/bench/kiln-cache -v warn
        done
        t1=$(now); echo "$t1 - $t0" | bc
    done | median)
    gets=$(( $(base_gets) - gets_before ))
    if command -v buildah >/dev/null; then
        for w in "$WORKLOADS/W1-small" "$WORKLOADS/W4-multistage"; do
            buildah bud -q --isolation chroot --layers --tls-verify=false --cache-to $REG/bench/buildah-cache \
                --cache-from $REG/bench/buildah-cache -t "$REG/bench/w5-$(basename $w | tr A-Z a-z):buildah" "$w" >/dev/null
        done
        b=$(for i in $(seq 1 "$RUNS"); do
            buildah rm -a >/dev/null 2>&1 || true
            buildah rmi -a -f >/dev/null 2>&1 || true
            echo "edited $(date +%s%N)" >> "$STATE/w4-edited/app.txt"
            t0=$(now)
            for w in "$WORKLOADS/W1-small" "$STATE/w4-edited"; do
                buildah bud -q --isolation chroot --layers --tls-verify=false --cache-from $REG/bench/buildah-cache \
                    -t "$REG/bench/w5-$(basename $w | tr A-Z a-z):buildah" "$w" >/dev/null
                buildah push -q --tls-verify=false "$REG/bench/w5-$(basename $w | tr A-Z a-z):buildah" >/dev/null
            done
            t1=$(now); echo "$t1 - $t0" | bc
        done | median)
        r=$(echo "scale=2; $k / $b" | bc)
    else
        b="not installed"; r="-"
    fi
    echo "| W5 (W1 + W4 from the cache, empty machine, app.txt edited) | ${k} s | ${b} s | $r |"
    echo
    echo "W5: kiln downloaded the base layer $gets times in $RUNS runs ($(( gets * base_size )) bytes; the registry's access log)"
}

if [ "${ONLY:-}" = W4 ]; then
    # Interleaved: kiln (stages in parallel), kiln --jobs 1, buildah.
    : > "$STATE/w4-par"; : > "$STATE/w4-seq"; : > "$STATE/w4-buildah"
    for i in $(seq 1 "$RUNS"); do
        kiln_time W4-multistage --build-arg REGISTRY=$REG >> "$STATE/w4-par"
        kiln_time W4-multistage --build-arg REGISTRY=$REG --jobs 1 >> "$STATE/w4-seq"
        if command -v buildah >/dev/null; then
            buildah_time W4-multistage >> "$STATE/w4-buildah"
        fi
    done
    p=$(median < "$STATE/w4-par"); q=$(median < "$STATE/w4-seq")
    echo "| workload | kiln (parallel stages) | kiln --jobs 1 | buildah | kiln/buildah |"
    echo "|---|---|---|---|---|"
    if [ -s "$STATE/w4-buildah" ]; then
        b=$(median < "$STATE/w4-buildah"); r=$(echo "scale=2; $p / $b" | bc)
    else
        b="not installed"; r="-"
    fi
    echo "| W4 (two independent CPU-bound stages) | ${p} s | ${q} s | ${b} s | $r |"
    exit 0
fi

# time and peak RSS (KiB) of a command, as "SECONDS KIB"
timed() {
    /usr/bin/time -f "%e %M" -o "$STATE/time.out" "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; return 1; }
    cat "$STATE/time.out"
}

if [ "${ONLY:-}" = W3 ]; then
    : > "$STATE/w3-kiln"; : > "$STATE/w3-buildah"
    for i in $(seq 1 "$RUNS"); do
        rm -rf "$STATE/kiln-cold"; sync
        timed $NOBODY "$KILN" build -c "$WORKLOADS/W3-bigdata" -d "$REG/bench/w3:kiln" --insecure-registry $REG \
            --kiln-dir "$STATE/kiln-cold" -v warn >> "$STATE/w3-kiln"
        if command -v buildah >/dev/null; then
            buildah rm -a >/dev/null 2>&1 || true; buildah rmi -a -f >/dev/null 2>&1 || true; sync
            # buildah's peak is the larger of its two commands'
            b1=$(timed buildah bud -q --isolation chroot --layers --tls-verify=false -t "$REG/bench/w3:buildah" "$WORKLOADS/W3-bigdata")
            b2=$(timed buildah push -q --tls-verify=false "$REG/bench/w3:buildah")
            echo "$b1 $b2" | awk '{printf "%.2f %d\n", $1 + $3, ($2 > $4 ? $2 : $4)}' >> "$STATE/w3-buildah"
        fi
    done
    kt=$(cut -d' ' -f1 "$STATE/w3-kiln" | median); km=$(cut -d' ' -f2 "$STATE/w3-kiln" | median)
    echo "| workload | kiln (uid 65534) | kiln peak RSS | buildah | buildah peak RSS | kiln/buildah |"
    echo "|---|---|---|---|---|---|"
    if [ -s "$STATE/w3-buildah" ]; then
        bt=$(cut -d' ' -f1 "$STATE/w3-buildah" | median); bm=$(cut -d' ' -f2 "$STATE/w3-buildah" | median)
        echo "| W3-bigdata | ${kt} s | $((km / 1024)) MiB | ${bt} s | $((bm / 1024)) MiB | $(echo "scale=2; $kt / $bt" | bc) |"
    else
        echo "| W3-bigdata | ${kt} s | $((km / 1024)) MiB | not installed | - | - |"
    fi
    exit 0
fi

if [ "${ONLY:-}" = LEVELS ]; then
    echo "| W3 layer compression | build + push (median) | peak RSS | layer size |"
    echo "|---|---|---|---|"
    for c in "gzip 1" "gzip 3" "gzip 6" "zstd 3"; do : > "$STATE/lv-$(echo $c | tr ' ' -)"; done
    for i in $(seq 1 "$RUNS"); do
        for c in "gzip 1" "gzip 3" "gzip 6" "zstd 3"; do
            set -- $c
            rm -rf "$STATE/kiln-cold"; sync
            timed $NOBODY "$KILN" build -c "$WORKLOADS/W3-bigdata" -d "$REG/bench/w3-$1-$2:kiln" --insecure-registry $REG \
                --kiln-dir "$STATE/kiln-cold" --compression $1 --compression-level $2 -v warn >> "$STATE/lv-$1-$2"
        done
    done
    for c in "gzip 1" "gzip 3" "gzip 6" "zstd 3"; do
        set -- $c
        t=$(cut -d' ' -f1 "$STATE/lv-$1-$2" | median); m=$(cut -d' ' -f2 "$STATE/lv-$1-$2" | median)
        size=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/bench/w3-$1-$2/manifests/kiln" \
            | python3 -c 'import json,sys; print(max(l["size"] for l in json.load(sys.stdin)["layers"]) // 1048576)')
        echo "| $1 level $2 | ${t} s | $((m / 1024)) MiB | ${size} MiB |"
    done
    exit 0
fi

if [ "${ONLY:-}" = MOUNT ]; then
    # The step works for ~2 s unless the cache mount already holds the
    # result, as a package or compiler cache would.
    mkdir -p "$STATE/ctx-mount"
    cat > "$STATE/ctx-mount/Dockerfile" <<DF
FROM $REG/debian:bookworm
COPY stamp /stamp
RUN --mount=type=cache,target=/cache test -f /cache/data || { i=0; while [ \$i -lt 80 ]; do seq 1 2000000 | md5sum >> /cache/data; i=\$((i+1)); done; }; cp /cache/data /result
DF
    chmod -R a+rwX "$STATE/ctx-mount"
    mount_build() {
        date +%s%N > "$STATE/ctx-mount/stamp"
        t0=$(now)
        as_nobody "$KILN" build -c "$STATE/ctx-mount" --oci-layout-path "$STATE/out-mount" --insecure-registry $REG \
            --kiln-dir "$STATE/kiln-mount" -v warn
        t1=$(now); echo "$t1 - $t0" | bc
    }
    rm -rf "$STATE/kiln-mount"
    mount_build >/dev/null # the base in the layer store: only the mount differs below
    : > "$STATE/mount-cold"; : > "$STATE/mount-warm"
    for i in $(seq 1 "$RUNS"); do
        rm -rf "$STATE/kiln-mount/mounts"
        mount_build >> "$STATE/mount-cold"
        mount_build >> "$STATE/mount-warm"
    done
    c=$(median < "$STATE/mount-cold"); w=$(median < "$STATE/mount-warm")
    echo "| RUN with a cache mount | empty cache | cache kept from the build before | warm/empty |"
    echo "|---|---|---|---|"
    echo "| ~2 s of work the cache spares | ${c} s | ${w} s | $(echo "scale=2; $w / $c" | bc) |"
    exit 0
fi

if [ "${ONLY:-}" = W5 ]; then
    echo "| workload | kiln (uid 65534) | buildah | kiln/buildah |"
    echo "|---|---|---|---|"
    w5
    exit 0
fi

# The main table: kiln (as root), buildah and BuildKit, cold, pull + build
# + push, interleaved, each run timed by GNU time: seconds, peak RSS and
# bytes written (%O, 512-byte blocks). BENCH_TMPFS=1 puts every tool's
# state on one tmpfs (each tool's own work); otherwise it is on the disk
# under $STATE (what users have). BuildKit runs as buildctl-daemonless.sh
# does, through BUILDKIT_SH (BuildKit v0.32.2's buildkit.sh; its column is
# left out when unset).
WORKLOADS_TIMED=${BENCH_WORKLOADS:-W1-small W2-bigbase-touch W3-bigdata W4-multistage}
TOOLSTATE=$STATE/disk
if [ "${BENCH_TMPFS:-0}" = 1 ]; then
    TOOLSTATE=$STATE/tmpfs
    mkdir -p "$TOOLSTATE"
    mountpoint -q "$TOOLSTATE" || mount -t tmpfs -o size=16g,mode=0755 tmpfs "$TOOLSTATE"
fi
mkdir -p "$TOOLSTATE"
BUILDAH="buildah --root $TOOLSTATE/buildah --runroot $TOOLSTATE/buildah-run --storage-driver overlay"

# "SECONDS PEAK_KIB WRITTEN_BLOCKS" of one command
measured() {
    /usr/bin/time -f "%e %M %O" -o "$STATE/time.out" "$@" >"$STATE/cmd.log" 2>&1 || { echo "failed: $*" >&2; tail -5 "$STATE/cmd.log" >&2; return 1; }
    cat "$STATE/time.out"
}
# BENCH_SETTLE=SECONDS: wait after each cleanup (untimed). ext4 without a
# journal skips inodes freed in the last 60 s (360 s while unsynced) and
# each create scans past them: a tool starting right after the previous
# run's state was deleted pays for it (docs/benchmarks.md). 61 measures
# without that.
settle() { sync; [ "${BENCH_SETTLE:-0}" -gt 0 ] && sleep "$BENCH_SETTLE"; return 0; }
kiln_cold() { # workload [binary [flags...]]
    w=$1; bin=${2:-$KILN}; shift; [ $# -gt 0 ] && shift
    rm -rf "$TOOLSTATE/kiln"; settle
    measured "$bin" build -c "$WORKLOADS/$w" -d "$REG/bench/$(echo $w | tr A-Z a-z):kiln" --insecure-registry $REG \
        --kiln-dir "$TOOLSTATE/kiln" --build-arg REGISTRY=$REG -v warn "$@"
}
# BENCH_SBOM=1: kiln with --sbom measured beside (what the scan costs).
sbom_cold() { kiln_cold "$1" "$KILN" --sbom; }
# KILN_BASELINE=/path/to/an/older/kiln: measured beside, for before/after.
baseline_cold() { kiln_cold "$1" "$KILN_BASELINE"; }
buildah_cold() { # workload: bud, then push; seconds and blocks add up, the peak is the larger
    $BUILDAH rm -a >/dev/null 2>&1 || true; $BUILDAH rmi -a -f >/dev/null 2>&1 || true; settle
    ref="$REG/bench/$(echo $1 | tr A-Z a-z):buildah"
    b1=$(measured $BUILDAH bud -q --isolation chroot --layers --tls-verify=false --build-arg REGISTRY=$REG -t "$ref" "$WORKLOADS/$1") || return 1
    b2=$(measured $BUILDAH push -q --tls-verify=false "$ref") || return 1
    echo "$b1 $b2" | awk '{printf "%.2f %d %d\n", $1 + $4, ($2 > $5 ? $2 : $5), $3 + $6}'
}
buildkit_cold() { # workload, as buildctl-daemonless.sh: a daemon on an empty root
    rm -rf "$TOOLSTATE/buildkit"; settle
    measured env BUILDKIT_ROOT="$TOOLSTATE/buildkit" bash "$BUILDKIT_SH" daemonless "$WORKLOADS/$1" "$WORKLOADS/$1/Dockerfile" \
        "$REG/bench/$(echo $1 | tr A-Z a-z):buildkit" --build-arg REGISTRY=$REG
}
# "median-seconds median-peak-MiB median-written-MiB" of a results file
summary() {
    s=$(cut -d' ' -f1 "$1" | median)
    m=$(cut -d' ' -f2 "$1" | median)
    o=$(cut -d' ' -f3 "$1" | median)
    echo "$s $((m / 1024)) $((o / 2048))"
}
cell() { set -- $1; echo "$1 s, $2 MiB, $3 MiB written"; }

TOOLS="kiln"
[ -n "${KILN_BASELINE:-}" ] && TOOLS="$TOOLS baseline"
[ "${BENCH_SBOM:-0}" = 1 ] && TOOLS="$TOOLS sbom"
command -v buildah >/dev/null && TOOLS="$TOOLS buildah"
[ -n "${BUILDKIT_SH:-}" ] && [ -f "$BUILDKIT_SH" ] && TOOLS="$TOOLS buildkit"
where=disk; [ "${BENCH_TMPFS:-0}" = 1 ] && where=tmpfs
echo "Cold builds with every tool's state on the $where ($TOOLSTATE), $(date -u +%Y-%m-%d), $RUNS interleaved runs, medians: seconds, peak RSS, MiB written"
echo
header="| workload | kiln (root) |"; rule="|---|---|"
[ -n "${KILN_BASELINE:-}" ] && { header="$header kiln baseline |"; rule="$rule---|"; }
[ "${BENCH_SBOM:-0}" = 1 ] && { header="$header kiln --sbom |"; rule="$rule---|"; }
echo "$header buildah | BuildKit (daemonless) | kiln / faster anchor |"
echo "$rule---|---|---|"
for w in $WORKLOADS_TIMED; do
    for t in $TOOLS; do : > "$STATE/$w-$t"; done
    for i in $(seq 1 "$RUNS"); do
        for t in $TOOLS; do
            ${t}_cold "$w" >> "$STATE/$w-$t" || true
        done
    done
    k=$(summary "$STATE/$w-kiln")
    best=""; row="| $w | $(cell "$k") |"
    if [ -n "${KILN_BASELINE:-}" ]; then row="$row $(cell "$(summary "$STATE/$w-baseline")") |"; fi
    if [ "${BENCH_SBOM:-0}" = 1 ]; then row="$row $(cell "$(summary "$STATE/$w-sbom")") |"; fi
    for t in buildah buildkit; do
        if [ -s "$STATE/$w-$t" ]; then
            a=$(summary "$STATE/$w-$t")
            if [ -z "$best" ] || [ "$(echo "${a%% *} < $best" | bc)" = 1 ]; then best=${a%% *}; fi
            row="$row $(cell "$a") |"
        else
            row="$row not run |"
        fi
    done
    ratio="-"; [ -n "$best" ] && ratio=$(echo "scale=2; ${k%% *} / $best" | bc)
    echo "$row $ratio |"
done
[ -n "${BENCH_ONLY_TABLE:-}" ] && exit 0

echo
echo "| snapshot of a one-file RUN | overlay upper (user namespaces) | full-tree diff (chroot mode) |"
echo "|---|---|---|"
mkdir -p "$STATE/ctx-touch"
for base in small10k bigbase; do
    printf 'FROM %s/%s:latest\nRUN echo one > /one\n' $REG $base > "$STATE/ctx-touch/Dockerfile"
    rm -rf "$STATE/kiln-snap"
    o=$(as_nobody "$KILN" build -c "$STATE/ctx-touch" --oci-layout-path "$STATE/out-snap" --insecure-registry $REG --kiln-dir "$STATE/kiln-snap" -v debug 2>&1 | sed -n 's/.*snapshot: .* in \([0-9.]*\)s.*/\1/p')
    rm -rf "$STATE/kiln-snap"
    c=$("$KILN" build -c "$STATE/ctx-touch" --oci-layout-path "$STATE/out-snap" --insecure-registry $REG --kiln-dir "$STATE/kiln-snap" --isolation chroot -v debug 2>&1 | sed -n 's/.*snapshot: .* in \([0-9.]*\)s.*/\1/p')
    echo "| $base | ${o} s | ${c} s |"
done
