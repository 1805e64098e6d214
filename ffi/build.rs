//! Links libSaCkpt.so as a C library expects: soname `libSaCkpt.so.1` and
//! only the API's symbols exported (`libSaCkpt.map`).

fn main() {
    let map = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("libSaCkpt.map");
    println!("cargo:rerun-if-changed={}", map.display());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libSaCkpt.so.1");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        map.display()
    );
}
