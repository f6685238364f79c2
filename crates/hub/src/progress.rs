//! One indicatif bar per downloaded file, drawn to stderr only when stderr
//! is a terminal and progress is enabled.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) fn file_bar(enabled: bool, name: &str, total: Option<u64>) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    bar.set_style(style(total.is_some()));
    bar.set_message(short_name(name));
    bar
}

/// Sets the total once it is known (a GET may tell it when HEAD did not).
pub(crate) fn set_total(bar: &ProgressBar, total: u64) {
    if bar.length() != Some(total) {
        bar.set_length(total);
        bar.set_style(style(true));
    }
}

fn style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The file name shown on the bar: the last path component, at most 40 chars.
fn short_name(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let chars: Vec<char> = base.chars().collect();
    if chars.len() <= 40 {
        base.to_string()
    } else {
        let tail: String = chars[chars.len() - 39..].iter().collect();
        format!("…{tail}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_names() {
        assert_eq!(super::short_name("a/b/model.gguf"), "model.gguf");
        let long = "x".repeat(50);
        assert_eq!(super::short_name(&long).chars().count(), 40);
    }
}
