#!/bin/sh
# Build kiln's own image with kiln into a docker archive:
#   deploy/build-image.sh OUT.tar [NAME]     (NAME: kiln:latest)
# then `docker load -i OUT.tar`. Needs a Rust toolchain, glibc's static
# library (Debian's libc6-dev), busybox-static and ca-certificates.
set -eu
out=$(realpath -m "$1")
name=${2:-kiln:latest}
cd "$(dirname "$0")/.."

# A static binary: in-place mode replaces the container's / (and its
# libraries) with the image being built.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -p kiln \
    --target x86_64-unknown-linux-gnu --target-dir target/static
bin=target/static/x86_64-unknown-linux-gnu/release/kiln

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/kiln/bin" "$ctx/kiln/ssl/certs" "$ctx/kiln/.docker" "$ctx/kiln/state"
cp "$bin" "$ctx/kiln/bin/kiln"
cp /bin/busybox "$ctx/kiln/bin/busybox"
for tool in sh ls cat cp mv rm mkdir echo env grep sed tar gzip wget test sleep; do
    ln -s busybox "$ctx/kiln/bin/$tool"
done
ln -s kiln "$ctx/kiln/bin/executor"   # Kaniko's job lines call /kaniko/executor
cp /etc/ssl/certs/ca-certificates.crt "$ctx/kiln/ssl/certs/"
echo '{}' > "$ctx/kiln/.docker/config.json"
: > "$ctx/kiln/.kiln-image"
cp deploy/Dockerfile "$ctx/Dockerfile"
chmod -R go-w "$ctx"

"$bin" build --context "$ctx" --tar-path "$out" --destination "$name" --no-push --reproducible
echo "wrote $out ($name): docker load -i $out"
