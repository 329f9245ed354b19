//! The packaging files (container image, compose file, systemd unit) cannot be run here
//! (no container engine, no systemd as init), so they are held to their linters.

use std::process::Command;

use zhiku_e2e::{binary, test_tool, workspace_root};

fn run(command: &mut Command) -> String {
    let output = command.output().expect("run linter");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

#[test]
fn packaging_files_pass_their_linters() {
    let deploy = workspace_root().join("deploy");
    // Warnings fail too; the Dockerfile's one ignore says why.
    let text = run(Command::new(test_tool("hadolint"))
        .args(["--failure-threshold", "info"])
        .arg(deploy.join("docker/Dockerfile")));
    assert!(text.trim().is_empty(), "{text}");
    for compose in ["docker/compose.yaml", "docker/compose.scale.yaml"] {
        run(Command::new(test_tool("yamllint"))
            .arg("--strict")
            .arg(deploy.join(compose)));
    }

    // systemd checks that ExecStart exists: point it at the binary under test.
    let unit = std::fs::read_to_string(deploy.join("systemd/zhiku.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/zhiku serve"));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("zhiku.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/zhiku", &binary().display().to_string()),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&output.stderr);
    // Only complaints about this unit count (the host's own units may have some).
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("zhiku.service"))
        .collect();
    assert!(ours.is_empty() && output.status.success(), "{text}");
}
