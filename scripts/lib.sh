# Shared by dev.sh and test.sh: toolchain checks and building the example components.

# rust-toolchain.toml pins the compiler and lists the wasm32-wasip2 target: one rustup call
# installs both on a fresh machine (this rustup does not install a pinned toolchain on its own).
ensure_toolchain() {
  local channel
  channel=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
  if ! rustup run "$channel" rustc --version >/dev/null 2>&1; then
    echo "==> installing Rust $channel with the wasm32-wasip2 target (rust-toolchain.toml)" >&2
    rustup toolchain install
  fi
  ensure_wasm_target
}

# The wasm target, should the toolchain have been installed without it.
ensure_wasm_target() {
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "==> adding the wasm32-wasip2 target" >&2
    rustup target add wasm32-wasip2
  fi
}

# Builds every example function into target/wasm (its own target dir: see tests/integration/support).
build_functions() {
  echo "==> building functions/ for wasm32-wasip2" >&2
  (cd functions && cargo build --release --target wasm32-wasip2 --target-dir ../target/wasm)
}
