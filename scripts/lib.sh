# Shared by dev.sh and test.sh: toolchain checks and building the example components.

# The wasm target is all a fresh machine with rustup lacks to build guests.
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
