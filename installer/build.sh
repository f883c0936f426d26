#!/usr/bin/env bash
# Builds Lockstep's installers for this OS with the Tauri bundler:
#   installer/build.sh deb        # Debian/Ubuntu  -> target/release/bundle/deb/*.deb
#   installer/build.sh msi        # Windows        -> target/release/bundle/msi/*.msi
#   installer/build.sh app,dmg    # macOS          -> target/release/bundle/{macos,dmg}/
# The headless hub (lockstep-hub) ships beside the tray app: it is built
# first and staged as the bundler's external binary. The version is the
# workspace's (Cargo.toml); tauri.conf.json carries none.
# Needs: Rust, Node.js (for the Tauri CLI, pinned in installer/package-lock.json)
# and the platform's WebView build deps (Linux: see scripts/deb-test).
# Prints the path of each installer built, one per line, last.
set -euo pipefail
bundles=${1:?usage: installer/build.sh BUNDLES (deb | msi | app,dmg)}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

triple=$(rustc -vV | sed -n 's/^host: //p')
exe=""
case "$triple" in *windows*) exe=".exe" ;; esac
target_dir=${CARGO_TARGET_DIR:-$root/target}

echo "==> cargo build --release -p lockstep-hub ($triple)" >&2
cargo build --release --locked -p lockstep-hub >&2
mkdir -p installer/bin
# The bundler looks for externalBin "…/lockstep-hub" as lockstep-hub-<triple>.
cp "$target_dir/release/lockstep-hub$exe" "installer/bin/lockstep-hub-$triple$exe"

echo "==> Tauri CLI (npm install --prefix installer)" >&2
# `npm install`, not `npm ci`: the lock file can only hold the CLI's native
# package for the platforms the registry here serves (Linux), and `npm ci`
# refuses a lock missing the Windows/macOS ones. package.json pins exact
# versions, and neither package has dependencies of its own.
npm install --prefix installer --no-audit --no-fund --loglevel=error >&2

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
echo "==> tauri build --bundles $bundles (version $version)" >&2
# LOCKSTEP_TAURI_CONFIG: more JSON merged last, e.g. the release workflow's
# Windows signing thumbprint.
extra=()
if [ -n "${LOCKSTEP_TAURI_CONFIG:-}" ]; then extra=(--config "$LOCKSTEP_TAURI_CONFIG"); fi
(cd src-tauri && ../installer/node_modules/.bin/tauri build --ci --bundles "$bundles" \
  --config ../installer/tauri.bundle.json ${extra[@]+"${extra[@]}"} -- --locked) >&2
find "$target_dir/release/bundle" -maxdepth 2 -name "*_${version}_*" \
  \( -name '*.deb' -o -name '*.msi' -o -name '*.dmg' \)
