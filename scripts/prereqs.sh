# Prerequisite checks shared by scripts/demo.sh and scripts/test.sh (sourced, not run).
#
# `check_build_prereqs` looks for everything the build of tickflow needs from the system and
# fills MISSING (what is missing, for people) and MISSING_DEBS (the Debian packages that bring
# it). `install_or_explain` then installs those packages when it can (root on Debian, not in
# check-only mode) or prints the exact install line and returns 1. Checking uses no network
# and runs in well under a second.

MISSING=()
MISSING_DEBS=()

need() { # what, debian-package
  MISSING+=("$1")
  [ -n "$2" ] && MISSING_DEBS+=("$2")
  return 0
}

# Where bindgen (clang-sys) finds libclang: LIBCLANG_PATH if set, then `llvm-config --libdir`,
# then the usual system directories (TICKFLOW_LIBCLANG_DIRS replaces that last list).
libclang_found() {
  local dirs=()
  [ -n "${LIBCLANG_PATH:-}" ] && dirs+=("$LIBCLANG_PATH")
  if command -v llvm-config >/dev/null 2>&1; then
    dirs+=("$(llvm-config --libdir 2>/dev/null)")
  fi
  local defaults="/usr/lib/llvm-*/lib /usr/lib/*-linux-gnu /usr/lib64 /usr/lib /usr/local/lib"
  # shellcheck disable=SC2206 # the list is split and its globs expanded on purpose
  dirs+=(${TICKFLOW_LIBCLANG_DIRS-$defaults})
  local d f
  for d in "${dirs[@]}"; do
    # libclang-14.so.1, not libclang-cpp.so.14 (a different library, which bindgen cannot use).
    for f in "$d"/libclang.so* "$d"/libclang-[0-9]*.so*; do
      [ -e "$f" ] && return 0
    done
  done
  return 1
}

# A library that pkg-config knows (the -dev package installs its .pc file).
pc_found() {
  command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$1" 2>/dev/null
}

check_build_prereqs() {
  command -v cargo >/dev/null 2>&1 || need "cargo (the Rust toolchain, from https://rustup.rs)" ""
  command -v cc >/dev/null 2>&1 || need "a C compiler (cc)" gcc
  command -v c++ >/dev/null 2>&1 || need "a C++ compiler (c++, for RocksDB)" g++
  command -v pkg-config >/dev/null 2>&1 || need "pkg-config" pkg-config
  libclang_found || need "libclang (RocksDB's bindings are generated with bindgen)" libclang-dev
  pc_found openssl || need "OpenSSL headers (librdkafka's TLS and SASL/SCRAM)" libssl-dev
  pc_found libsasl2 || need "Cyrus SASL headers (librdkafka's SASL/GSSAPI)" libsasl2-dev
  return 0
}

# Installs MISSING_DEBS (root on Debian, unless CHECK_ONLY=1), or explains and returns 1.
install_or_explain() {
  [ ${#MISSING[@]} -eq 0 ] && return 0
  local can_install=0
  if [ "${CHECK_ONLY:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    && [ ${#MISSING[@]} -eq ${#MISSING_DEBS[@]} ]; then
    can_install=1
  fi
  if [ $can_install = 1 ]; then
    echo "installing ${MISSING_DEBS[*]} (needed to build tickflow)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${MISSING_DEBS[@]}" >/dev/null
    MISSING=() MISSING_DEBS=()
    return 0
  fi
  echo "tickflow cannot be built here yet; missing:" >&2
  local m
  for m in "${MISSING[@]}"; do echo "  - $m" >&2; done
  if [ ${#MISSING_DEBS[@]} -gt 0 ]; then
    echo "install them with:" >&2
    echo "  sudo apt-get install -y ${MISSING_DEBS[*]}" >&2
  fi
  return 1
}
