//! Where the tests find the programs that are Cargo examples (the test
//! applications and the demo), so that `cargo install` leaves them out.
//!
//! `cargo test` builds every example, but `cargo test --test NAME` builds
//! none: the first lookup in a test process runs `cargo build --examples`
//! in the profile of the running test (a no-op when they are up to date),
//! so a stale or missing example is never run.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The directory holding the examples of this test's profile
/// (`target/PROFILE/examples`), built and up to date.
fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // The test runs as target/PROFILE/deps/NAME-HASH.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("test executable under target/PROFILE/deps");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => panic!("no profile directory above {}", exe.display()),
        };
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--examples", "--profile", profile])
            .args(["--manifest-path", manifest])
            .status()
            .expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples: {status}");
        profile_dir.join("examples")
    })
}

fn example(name: &str) -> &'static str {
    static PATHS: OnceLock<[String; 4]> = OnceLock::new();
    let names = [
        "s6-tls-testapp",
        "s6-tls-faultapp",
        "ucspitls-demo",
        "ucspitls-demo-client",
    ];
    let paths =
        PATHS.get_or_init(|| names.map(|n| examples_dir().join(n).to_string_lossy().into_owned()));
    let i = names
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("{name} is not one of the examples"));
    &paths[i]
}

/// `examples/s6-tls-testapp.rs`: the applications of tests/ucspitlsd.rs
/// and tests/tlsd.rs.
pub fn testapp_exe() -> &'static str {
    example("s6-tls-testapp")
}

/// `examples/s6-tls-faultapp.rs`: the misbehaving application of the
/// fault, load and secrets tests.
pub fn faultapp_exe() -> &'static str {
    example("s6-tls-faultapp")
}

/// `examples/ucspitls-demo.rs`: the SMTP demo, the library's worked example.
pub fn demo_exe() -> &'static str {
    example("ucspitls-demo")
}

/// `examples/ucspitls-demo-client.rs`: the demo's client side, the
/// library's worked example under s6-ucspitlsc.
pub fn demo_client_exe() -> &'static str {
    example("ucspitls-demo-client")
}
