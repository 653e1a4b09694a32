#!/usr/bin/env bash
# Builds the release archives of kubectl-aether and renders the krew manifest for them.
#
#   krew/release.sh BASE_URL [TARGET...]
#
# BASE_URL is where the archives will be downloadable (a release page), TARGETs are Rust
# target triples (default: the host's). Each target gives dist/kubectl-aether-<target>.tar.gz
# holding the binary, LICENSE and README.md; dist/aether.yaml is the manifest with their
# sha256 sums. Cross targets need their toolchain installed (rustup target add ...).
set -euo pipefail
cd "$(dirname "$0")/.."

base_url=${1:?usage: krew/release.sh BASE_URL [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=("$(rustc -vV | sed -n 's/^host: //p')")
fi

version=$(cargo metadata --no-deps --format-version 1 \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "kubectl-aether"))')

# Maps a Rust target triple to krew's os/arch labels.
krew_platform() {
  local os arch
  case "$1" in
    x86_64-*) arch=amd64 ;;
    aarch64-*) arch=arm64 ;;
    *) echo "unsupported target $1" >&2; return 1 ;;
  esac
  case "$1" in
    *-linux-*) os=linux ;;
    *-apple-darwin) os=darwin ;;
    *-windows-*) os=windows ;;
    *) echo "unsupported target $1" >&2; return 1 ;;
  esac
  echo "$os $arch"
}

mkdir -p dist
platforms=""
for target in "${targets[@]}"; do
  read -r os arch < <(krew_platform "$target")
  cargo build --release --locked -p kubectl-aether --target "$target"
  exe=kubectl-aether
  [ "$os" = windows ] && exe=kubectl-aether.exe
  stage=$(mktemp -d)
  cp "target/$target/release/$exe" LICENSE README.md "$stage/"
  archive="kubectl-aether-$target.tar.gz"
  tar -C "$stage" -czf "dist/$archive" "$exe" LICENSE README.md
  rm -rf "$stage"
  sum=$(sha256sum "dist/$archive" | cut -d' ' -f1)
  platforms+="  - selector:
      matchLabels:
        os: $os
        arch: $arch
    uri: $base_url/$archive
    sha256: $sum
    bin: $exe
    files:
      - from: $exe
        to: .
      - from: LICENSE
        to: .
"
done

python3 - "$version" "$platforms" <<'PY'
import sys
version, platforms = sys.argv[1], sys.argv[2].rstrip("\n")
text = open("krew/aether.yaml.in").read()
open("dist/aether.yaml", "w").write(text.replace("@VERSION@", version).replace("@PLATFORMS@", platforms) + "\n")
PY
echo "dist/aether.yaml written for: ${targets[*]}"
