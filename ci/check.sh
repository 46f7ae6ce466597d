#!/usr/bin/env bash
# The whole CI gate: formatting, lints, docs, and the README's test command.
# Needs only the Rust toolchain (rustfmt and clippy components).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
export INSTA_UPDATE=no
export CI=true

echo "== toolchain"
cargo --version
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo doc -D warnings (intra-doc links resolve)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --quiet

echo "== tests (the README's test command)"
cargo test --workspace
