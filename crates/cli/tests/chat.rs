//! `bitnet chat`: commands, multi-line messages and Ctrl-C with piped
//! input, and line editing and history at a terminal (a pseudo-terminal).
//! Every reply is compared with a one-shot `run --chat` of the same
//! message, so a command sent to the model, or a message garbled on the way
//! in, would change the text.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// The reply of a one-shot `run --chat` with `prompt`.
fn one_shot(model: &str, prompt: &str, n: &str) -> String {
    let out = ok(bitnet()
        .args([
            "run", "-m", model, "--chat", "-p", prompt, "-n", n, "--temp", "0",
        ])
        .args(["--output-format", "json"]));
    json_stdout(&out)["text"].as_str().unwrap().to_string()
}

/// What a child wrote to one stream so far, collected by a thread.
#[derive(Clone)]
struct Collected(Arc<Mutex<Vec<u8>>>);

impl Collected {
    /// Collects `r`; `on_chunk` sees everything read so far after each read.
    fn spawn(
        mut r: impl Read + Send + 'static,
        mut on_chunk: impl FnMut(&[u8]) + Send + 'static,
    ) -> Collected {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let shared = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut all = shared.lock().unwrap();
                all.extend_from_slice(&chunk[..n]);
                on_chunk(&all);
            }
        });
        Collected(buf)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).replace('\r', "")
    }

    /// Waits until `done` holds for the text (a minute at most).
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.text();
            if done(&text) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; so far:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A child process that is killed if the test fails before it ends.
struct Running(Child);

impl Running {
    fn wait_success(mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "chat ended with {status}");
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "chat did not end"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The replies in a piped chat transcript (between the `> ` prompts).
fn replies(stdout: &str) -> Vec<String> {
    stdout
        .split("\n> ")
        .map(|s| s.trim_end_matches('\n').to_string())
        .filter(|s| !s.trim().is_empty())
        .collect()
}

#[test]
fn piped_chat_commands_and_multi_line_messages() {
    let single = one_shot("builtin", "Copyright", "8");
    let joined = one_shot("builtin", "Copyright\nand then?", "8");
    assert_ne!(single, joined);
    let out = bitnet()
        .args(["chat", "-m", "builtin", "-n", "8", "--temp", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = out;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"/help\nCopyright\n/reset\n\"\"\"\nCopyright\nand then?\n\"\"\"\n/reset\n\
              Copyright\\\nand then?\n/frobnicate\n/exit\nnever read\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    // Commands never reach the model: three messages, three replies, each
    // as in a fresh conversation (after /reset) with the joined lines.
    let trim = |s: &str| s.trim_end_matches('\n').to_string();
    assert_eq!(
        replies(&stdout),
        [trim(&single), trim(&joined), trim(&joined)],
        "{stdout}"
    );
    assert!(
        stderr.contains("/reset         forget the conversation"),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("(conversation reset: 2 messages forgotten)")
            .count(),
        2,
        "{stderr}"
    );
    assert!(stderr.contains("unknown command /frobnicate"), "{stderr}");
}

#[test]
fn ctrl_c_stops_the_reply_not_the_chat() {
    // The tiny random-weight model with the Llama 3 vocabulary writes
    // thousands of tokens without an end (a few seconds): long enough to
    // interrupt.
    let Some(fixtures) = shared_fixtures() else {
        return;
    };
    let model = fixtures.join("tiny-bitnet");
    let mut child = bitnet()
        .args(["chat", "-m"])
        .arg(&model)
        .args(["-n", "3000", "-c", "4096", "--temp", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = Collected::spawn(child.stdout.take().unwrap(), |_| {});
    let stderr = Collected::spawn(child.stderr.take().unwrap(), |_| {});
    let pid = child.id() as libc::pid_t;
    let child = Running(child);
    stdin.write_all(b"Hi\n").unwrap();
    stdout.wait_for("the reply to start", |t| {
        t.split_once("> ")
            .is_some_and(|(_, reply)| reply.len() > 40)
    });
    // SAFETY: sends SIGINT to our own child, which is still running (it is
    // only waited for below).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    stderr.wait_for("the reply to stop", |t| t.contains("(reply stopped)"));
    let text = stdout.wait_for("the next prompt", |t| t.ends_with("\n\n> "));
    let reply = replies(&text).concat();
    assert!(
        reply.split_whitespace().count() < 2500,
        "the reply ran to its end: {} words",
        reply.split_whitespace().count()
    );
    stdin.write_all(b"/help\n").unwrap();
    stderr.wait_for("the help", |t| t.contains("commands:"));
    stdin.write_all(b"/exit\n").unwrap();
    drop(stdin);
    child.wait_success();
}

/// A pseudo-terminal: (master, slave) with 24 rows of 80 columns.
#[cfg(target_os = "linux")]
fn openpty() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the out-pointers are valid locals; no name buffer or termios
    // is passed, and the window size outlives the call.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty succeeded, so both descriptors are open and ours.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

#[cfg(target_os = "linux")]
#[test]
fn line_editing_and_history_at_a_terminal() {
    let want = one_shot("builtin", "Copyright", "12");
    // What the model would get from a terminal without line editing.
    let garbled = one_shot("builtin", "Copyight\x1b[D\x1b[D\x1b[D\x1b[Dr", "12");
    assert_ne!(want, garbled);
    let (master, slave) = openpty();
    let mut keys = master.try_clone().unwrap();
    let mut answers = master.try_clone().unwrap();
    let child = bitnet()
        .args(["chat", "-m", "builtin", "-n", "12", "--temp", "0"])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let child = Running(child);
    // Answer the editor's cursor-position queries as a terminal does.
    let mut answered = 0;
    let screen = Collected::spawn(master, move |all| {
        let asked = all.windows(4).filter(|w| w == b"\x1b[6n").count();
        while answered < asked {
            let _ = answers.write_all(b"\x1b[1;1R");
            answered += 1;
        }
    });
    let prompt_after = |t: &str, n: usize| {
        t.match_indices(want.as_str())
            .nth(n - 1)
            .is_some_and(|(at, _)| t[at..].contains("> "))
    };
    screen.wait_for("the first prompt", |t| t.contains("> "));
    // Type "Copyight", go four characters left, insert the "r".
    keys.write_all(b"Copyight\x1b[D\x1b[D\x1b[D\x1b[Dr\r")
        .unwrap();
    screen.wait_for("the first reply", |t| prompt_after(t, 1));
    keys.write_all(b"/reset\r").unwrap();
    screen.wait_for("the prompt after the reset", |t| {
        t.split_once("(conversation reset")
            .is_some_and(|(_, after)| after.contains("> "))
    });
    // Up twice: past "/reset" to "Copyright", sent again.
    keys.write_all(b"\x1b[A\x1b[A\r").unwrap();
    let screen_text = screen.wait_for("the second reply", |t| prompt_after(t, 2));
    assert!(!screen_text.contains(&garbled), "{screen_text}");
    keys.write_all(b"\x04").unwrap();
    child.wait_success();
}
