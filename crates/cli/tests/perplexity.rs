//! `bitnet perplexity` shows its progress on stderr as llama-perplexity
//! does: the window count, then `[i]ppl,` with the running estimate after
//! each window.

mod common;

use common::*;

#[test]
fn perplexity_prints_running_estimates_on_stderr() {
    let demo = repo_fixtures().join("demo-bitnet");
    let text = std::fs::read_to_string(demo.join("valid.txt")).unwrap();
    // About 1000 tokens: several windows of 64.
    let cut = text.char_indices().nth(4000).map_or(text.len(), |(i, _)| i);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("text.txt");
    std::fs::write(&file, &text[..cut]).unwrap();
    let out = ok(bitnet()
        .args(["perplexity", "-m", "builtin", "-c", "64", "-t", "1", "-f"])
        .arg(&file)
        .args(["--output-format", "json"]));
    let result = json_stdout(&out);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let chunk_nll: Vec<f64> = result["chunk_nll"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let n_tokens = result["n_tokens"].as_u64().unwrap() as usize;
    let windows = chunk_nll.len();
    assert!(windows >= 4, "{windows} windows");

    let header = format!("perplexity: {windows} windows of 64 tokens, ");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&header) && l.contains("ETA")),
        "no header {header:?} in\n{stderr}"
    );
    let progress = stderr
        .lines()
        .find(|l| l.starts_with("[1]"))
        .unwrap_or_else(|| panic!("no progress line in\n{stderr}"));
    // The running estimate after window i: exp(mean NLL of the tokens so far).
    let want: String = (1..=windows)
        .map(|i| {
            let scored = n_tokens.min(i * 63);
            let ppl = (chunk_nll[..i].iter().sum::<f64>() / scored as f64).exp();
            format!("[{i}]{ppl:.4},")
        })
        .collect();
    assert_eq!(progress, want);
    // The last estimate is the result.
    let last = format!("[{windows}]{:.4},", result["perplexity"].as_f64().unwrap());
    assert!(progress.ends_with(&last), "{progress} vs {last}");
}
