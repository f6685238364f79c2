//! The container and Kubernetes files name only flags and subcommands the
//! binary has, so a renamed flag cannot silently break a deployment.

mod common;

use common::*;

fn help(args: &[&str]) -> String {
    let out = ok(bitnet().args(args).arg("--help"));
    String::from_utf8(out.stdout).unwrap()
}

/// `--flag` and `-f` words of `text` (before any `=`).
fn flags(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with('-') && w.len() > 1 && !w.starts_with("--build-arg"))
        .map(|w| w.split('=').next().unwrap().to_string())
        .filter(|w| {
            w.chars()
                .nth(1)
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '-')
        })
        .collect()
}

#[test]
fn deployment_and_dockerfile_use_real_flags() {
    let root = repo_fixtures().join("..");
    let serve = help(&["serve"]);
    let deployment =
        std::fs::read_to_string(root.join("deploy/kubernetes/deployment.yaml")).unwrap();
    // The serve container's args: the lines after `- serve` up to `env:`.
    let args = deployment
        .split("- serve\n")
        .nth(1)
        .and_then(|rest| rest.split("env:").next())
        .expect("the deployment runs `serve`");
    let used = flags(args);
    assert!(used.len() >= 5, "{used:?}");
    for flag in &used {
        assert!(
            serve.contains(&format!("{flag} ")) || serve.contains(&format!("{flag},")),
            "deployment.yaml: `bitnet serve` has no {flag}"
        );
    }
    assert!(deployment.contains("args: [\"pull\", \"$(MODEL)\"]"));
    help(&["pull"]);
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let cmd = dockerfile.lines().find(|l| l.starts_with("CMD")).unwrap();
    assert!(cmd.contains("\"serve\""));
    for flag in flags(cmd) {
        assert!(
            serve.contains(&format!("{flag} ")),
            "Dockerfile: `bitnet serve` has no {flag}"
        );
    }
}
