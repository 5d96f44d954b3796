//! Lays out the release programs so that what one connection runs is
//! together: `link-order.txt` lists the functions a session executes
//! (made by `scripts/link-order`), and lld places them first, in that
//! order. The kernel maps program text 64 KiB around each page fault, so
//! code scattered over 3.4 MB of text made each session map 2.2 MB of it;
//! gathered, a session maps about a third less, and takes fewer faults
//! (BENCHMARKS.md, "Lone session Rss").
//!
//! The names are mangled with hashes that depend on the toolchain and the
//! locked dependencies: after either changes, names that no longer match
//! are ignored (the layout is then only less good, never wrong) until the
//! file is made again. Only the release binaries of x86_64 Linux get it,
//! linked by lld, rustc's default linker there.

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("PROFILE") != "release"
        || var("CARGO_CFG_TARGET_ARCH") != "x86_64"
        || var("CARGO_CFG_TARGET_OS") != "linux"
    {
        return;
    }
    let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("link-order.txt");
    if !order.exists() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
