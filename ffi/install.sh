#!/bin/sh
# Builds libSaCkpt and installs it for C programs under PREFIX (default
# /usr/local):
#   PREFIX/lib/libSaCkpt.so.1, PREFIX/lib/libSaCkpt.so -> libSaCkpt.so.1,
#   PREFIX/lib/libSaCkpt.a, PREFIX/include/{saAis.h,saCkpt.h,saCkpt_B_02_03.h,clCkptHotStandby.h},
#   PREFIX/lib/pkgconfig/SaCkpt.pc
# Then: cc app.c $(pkg-config --cflags --libs SaCkpt)
#   (with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig for a prefix pkg-config does not search).
set -eu
prefix=${1:-/usr/local}
case $prefix in
    /*) ;;
    *) prefix=$(pwd)/$prefix ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -p ckpt-ffi
target=${CARGO_TARGET_DIR:-$root/target}/release
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$target/libSaCkpt.so" "$prefix/lib/libSaCkpt.so.1"
ln -sf libSaCkpt.so.1 "$prefix/lib/libSaCkpt.so"
install -m 0644 "$target/libSaCkpt.a" "$prefix/lib/libSaCkpt.a"
for h in ffi/include/*.h; do
    install -m 0644 "$h" "$prefix/include/"
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
cat > "$prefix/lib/pkgconfig/SaCkpt.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: SaCkpt
Description: SA Forum AIS Checkpoint library (ckpt)
Version: $version
Libs: -L\${libdir} -lSaCkpt
Libs.private: -lpthread -ldl -lm
Cflags: -I\${includedir}
PC
echo "installed libSaCkpt $version under $prefix"
