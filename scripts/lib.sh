# Shared by scripts/run and scripts/test: install what is missing, quietly.
# shellcheck shell=bash

# Debian packages: installed only when missing, so a warm machine pays nothing.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Rust: the toolchain on the PATH, or rustup's when there is none (Debian's
# own cargo is too old for axum 0.8).
ensure_rust() {
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  command -v cargo >/dev/null && return 0
  ensure_packages curl ca-certificates build-essential pkg-config
  echo "==> installing Rust with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
  . "$HOME/.cargo/env"
}

# Node.js 20+ for the interop test (the Medplum client).
ensure_node() {
  command -v node >/dev/null || ensure_packages nodejs npm
}

# A cross-compilation target's standard library, enough to check and lint
# for it (not to link): there already, or added with rustup. Returns 1 when
# it cannot be had (no rustup, or rustup cannot download it offline).
ensure_rust_target() {
  [ -d "$(rustc --print sysroot)/lib/rustlib/$1/lib" ] && return 0
  command -v rustup >/dev/null || return 1
  echo "==> rustup target add $1"
  timeout 600 rustup target add "$1"
}
