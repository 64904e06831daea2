# Sourced by scripts/test and scripts/demo: installs the tools they need
# into ~/.cache/hrsync (only the first run pays).

cache="$HOME/.cache/hrsync"
tansu_version="0.6.0"
mkdir -p "$cache"

say() { printf '==> %s\n' "$*" >&2; }

ensure_build_deps() {
  # rdkafka builds librdkafka with TLS and SASL support: it needs OpenSSL's
  # headers and pkg-config.
  if ! pkg-config --exists openssl 2>/dev/null; then
    say "installing libssl-dev and pkg-config (needed to build librdkafka)"
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config
    else
      sudo apt-get update -qq && sudo apt-get install -y -qq libssl-dev pkg-config
    fi
  fi
}

ensure_nextest() {
  # The tests run under cargo-nextest (one process per test, which the
  # crash and fault tests need).
  export PATH="$cache/tools/bin:$PATH"
  if cargo nextest --version >/dev/null 2>&1; then
    return
  fi
  say "installing cargo-nextest into $cache/tools (a few minutes, once)"
  CARGO_TARGET_DIR="$cache/nextest-target" cargo install cargo-nextest --locked --root "$cache/tools"
}

ensure_tansu() {
  local bin="$cache/tools/bin/tansu"
  # (Outputs are captured before matching: with pipefail, `cmd | grep -q`
  # fails at random when grep exits before cmd has written everything.)
  if [ -x "$bin" ] && [[ "$("$bin" --version 2>/dev/null)" == *"$tansu_version"* ]]; then
    return
  fi
  say "installing the tansu $tansu_version broker into $cache/tools (about 10 minutes, once)"
  CARGO_TARGET_DIR="$cache/tansu-target" cargo install tansu --version "$tansu_version" \
    --locked --features dynostore,libsql --root "$cache/tools"
}
