#!/bin/sh
# Used by the Dockerfile's build stage (not by users directly).
#   build-function.sh prepare   install the Rust target, and a cross linker
#                               when the build machine's architecture differs
#   build-function.sh build     cargo build --release for TARGETARCH
# Environment: TARGETARCH (amd64 | arm64); optionally EDGE_SDK_GIT (and
# EDGE_SDK_REV) or EDGE_SDK_PATH to take edge-sdk from a git repository or a
# local checkout instead of crates.io; HANDLER_OUT, where the binary goes
# (default /handler).
set -eu

case "${TARGETARCH:-amd64}" in
  amd64) target=x86_64-unknown-linux-gnu; machine=x86_64; gcc=x86-64-linux-gnu; libc=amd64 ;;
  arm64) target=aarch64-unknown-linux-gnu; machine=aarch64; gcc=aarch64-linux-gnu; libc=arm64 ;;
  *) echo "unsupported TARGETARCH '${TARGETARCH}': build for linux/amd64 or linux/arm64" >&2; exit 1 ;;
esac

case "${1:-}" in
  prepare)
    rustup target add "$target"
    if [ "$(uname -m)" != "$machine" ]; then
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "gcc-$gcc" "libc6-dev-$libc-cross"
      rm -rf /var/lib/apt/lists/*
    fi
    ;;
  build)
    if [ "$(uname -m)" != "$machine" ]; then
      linker_var="CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_LINKER"
      export "$linker_var=$(echo "$gcc" | sed 's/x86-64/x86_64/')-gcc"
    fi
    set -- --release --target "$target"
    if [ -n "${EDGE_SDK_PATH:-}" ]; then
      set -- "$@" --config "patch.crates-io.edge-sdk.path=\"${EDGE_SDK_PATH}\""
    elif [ -n "${EDGE_SDK_GIT:-}" ]; then
      set -- "$@" --config "patch.crates-io.edge-sdk.git=\"${EDGE_SDK_GIT}\""
      if [ -n "${EDGE_SDK_REV:-}" ]; then
        set -- "$@" --config "patch.crates-io.edge-sdk.rev=\"${EDGE_SDK_REV}\""
      fi
    fi
    cargo build "$@"
    cp "${CARGO_TARGET_DIR:-target}/$target/release/handler" "${HANDLER_OUT:-/handler}"
    ;;
  *)
    echo "usage: build-function.sh prepare|build" >&2
    exit 2
    ;;
esac
