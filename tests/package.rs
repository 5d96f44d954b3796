//! What `cargo install --path .` installs: the package's binary targets,
//! read from `cargo metadata`. Each must be a program a user runs, with its
//! manual page in doc/; the test applications and the demo are examples.

use std::path::Path;
use std::process::Command;

/// The names of the targets of `kind` ("bin", "example") in the
/// metadata's JSON, without a JSON parser: each target object starts with
/// its `"kind"` and names itself in the `"name"` that follows.
fn targets(json: &str, kind: &str) -> Vec<String> {
    let marker = format!("{{\"kind\":[\"{kind}\"]");
    json.split(&marker)
        .skip(1)
        .map(|rest| {
            let start = rest.find("\"name\":\"").expect("a target has a name") + 8;
            let len = rest[start..].find('"').expect("name ends");
            rest[start..start + len].to_owned()
        })
        .collect()
}

#[test]
fn only_user_facing_programs_are_installed() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8(out.stdout).expect("UTF-8 metadata");
    let bins = targets(&json, "bin");
    let examples = targets(&json, "example");
    let mut installed = bins.clone();
    installed.sort();
    assert_eq!(
        installed,
        [
            "s6-tlsc",
            "s6-tlsc-io",
            "s6-tlsd",
            "s6-tlsd-io",
            "s6-ucspitlsc",
            "s6-ucspitlsd"
        ],
        "the programs cargo install puts in PATH"
    );
    for name in [
        "s6-tls-testapp",
        "s6-tls-faultapp",
        "ucspitls-demo",
        "ucspitls-demo-client",
    ] {
        assert!(
            !bins.iter().any(|b| b == name),
            "{name} is installed: {bins:?}"
        );
        assert!(
            examples.iter().any(|e| e == name),
            "{name} not in {examples:?}"
        );
    }
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("doc");
    for name in &bins {
        assert!(
            doc.join(format!("{name}.md")).is_file(),
            "{name} is installed but has no manual page doc/{name}.md"
        );
    }
}

/// Every deployment example of a server program in the README and the
/// manual pages sets `--handshake-timeout`: the default is no timeout (as
/// in s6-networking), and a copied example must not hold a process for
/// ever for a client that never finishes its handshake.
#[test]
fn every_deployment_example_sets_a_handshake_timeout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("doc")).expect("doc/") {
        let path = entry.expect("doc/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut examples = 0;
    for page in pages {
        let text = std::fs::read_to_string(&page).expect("read page");
        let mut fenced = false;
        for line in text.lines() {
            if line.starts_with("```") {
                fenced = !fenced;
                continue;
            }
            let code = fenced || line.starts_with("    ");
            let runs_a_server = ["s6-ucspitlsd -", "s6-tlsd -", "s6-tlsd-io -"]
                .iter()
                .any(|p| line.contains(p));
            // Synopses (`[ -S | -s ] ...`) are not examples.
            if !code || !runs_a_server || line.contains("[ ") {
                continue;
            }
            examples += 1;
            assert!(
                line.contains("--handshake-timeout="),
                "{}: no --handshake-timeout in {line:?}",
                page.display()
            );
        }
    }
    assert!(examples >= 7, "only {examples} examples found");
}
