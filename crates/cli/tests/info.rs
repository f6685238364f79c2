//! `bitnet info` on every kind of model argument, and `bitnet completions`.

mod common;

use common::*;

fn stdout_of(args: &[&str]) -> String {
    String::from_utf8(ok(bitnet().args(args)).stdout).unwrap()
}

#[test]
fn info_takes_builtin_and_names_architectures_as_the_files_do() {
    let builtin = stdout_of(&["info", "builtin"]);
    assert!(
        builtin.contains(
            "architecture: bitnet | hidden 256 | layers 4 | heads 4 (kv 2) x 64 | ffn 768 (relu²)"
        ),
        "{builtin}"
    );
    assert!(builtin.contains("model_type = \"bitnet\""), "{builtin}");
    assert!(
        builtin.contains("model.layers.0.self_attn.q_proj.weight"),
        "{builtin}"
    );
    let gguf = repo_fixtures().join("demo-bitnet/gguf/demo-bitnet-i2_s.gguf");
    let gguf = stdout_of(&["info", gguf.to_str().unwrap()]);
    assert!(gguf.contains("architecture: bitnet-b1.58 |"), "{gguf}");
    assert!(gguf.contains("rope θ 500000 (neox)"), "{gguf}");
    let dir = repo_fixtures().join("demo-bitnet");
    let hf = stdout_of(&["info", dir.to_str().unwrap()]);
    assert!(hf.contains("architecture: bitnet |"), "{hf}");
    for text in [&builtin, &gguf, &hf] {
        for internal in ["BitnetB158", "Relu2", "Neox"] {
            assert!(!text.contains(internal), "{internal} in {text}");
        }
    }
    fails_with(
        bitnet().args(["info", "out/missing.gguf"]),
        &["no such file"],
    );
}

#[test]
fn completions_for_each_shell() {
    let bash = stdout_of(&["completions", "bash"]);
    assert!(
        bash.contains("_bitnet()") && bash.contains("--n-predict"),
        "{bash}"
    );
    let zsh = stdout_of(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef bitnet"), "{zsh}");
    let fish = stdout_of(&["completions", "fish"]);
    assert!(
        fish.contains("complete -c bitnet") && fish.contains("chat"),
        "{fish}"
    );
    let out = bitnet().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
