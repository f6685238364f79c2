//! A tiny threaded HTTP/1.1 server on 127.0.0.1 that emulates the parts of
//! the Hugging Face Hub that `bitnet-hub` uses, with knobs to misbehave.
//!
//! - `GET /api/models/{org}/{name}/revision/{rev}`: repo info JSON.
//! - `HEAD|GET /{org}/{name}/resolve/{rev}/{file}`: regular files answer 200
//!   with `ETag` (weak, quoted) and `X-Repo-Commit`; LFS files answer 302 to
//!   an absolute `/blobs/{sha256}?sig=...` URL (a stand-in for the CDN) with
//!   `X-Linked-Etag`, `X-Linked-Size` and `X-Repo-Commit`.
//! - `HEAD|GET /blobs/{sha256}`: LFS content.
//! - Range requests (`bytes=N-`) get 206 unless `ignore_range` is set.
//! - 404 with `X-Error-Code` for unknown repos/revisions/files, 401
//!   `GatedRepo` for a gated repo without the right token, a relative 307
//!   for renamed repos.
//!
//! Every connection carries one request (`Connection: close`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The token that opens gated repos.
pub const GOOD_TOKEN: &str = "hf_good_token";

#[derive(Clone, Debug)]
pub struct MockFile {
    pub name: String,
    pub content: Vec<u8>,
    /// Served through a redirect to `/blobs/<sha256>` like LFS files.
    pub lfs: bool,
    /// Size announced in HEAD headers instead of the real one.
    pub advertised_size: Option<u64>,
    /// Serve the content with its first byte flipped.
    pub corrupt: bool,
}

impl MockFile {
    pub fn regular(name: &str, content: impl Into<Vec<u8>>) -> MockFile {
        MockFile {
            name: name.to_string(),
            content: content.into(),
            lfs: false,
            advertised_size: None,
            corrupt: false,
        }
    }

    pub fn lfs(name: &str, content: impl Into<Vec<u8>>) -> MockFile {
        MockFile {
            lfs: true,
            ..MockFile::regular(name, content)
        }
    }

    /// The etag the Hub gives: SHA-256 for LFS files, a 40-hex id otherwise.
    pub fn etag(&self) -> String {
        let digest = if self.lfs {
            Sha256::digest(&self.content)
        } else {
            let mut h = Sha256::new();
            h.update(format!("blob {}\0", self.content.len()));
            h.update(&self.content);
            h.finalize()
        };
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        if self.lfs { hex } else { hex[..40].to_string() }
    }

    fn served(&self) -> Vec<u8> {
        let mut c = self.content.clone();
        if self.corrupt && !c.is_empty() {
            c[0] ^= 0xff;
        }
        c
    }
}

#[derive(Clone, Debug)]
pub struct MockRepo {
    pub id: String,
    pub commit: String,
    pub files: Vec<MockFile>,
    pub gated: bool,
}

impl MockRepo {
    pub fn new(id: &str, commit: &str, files: Vec<MockFile>) -> MockRepo {
        MockRepo {
            id: id.to_string(),
            commit: commit.to_string(),
            files,
            gated: false,
        }
    }

    pub fn file(&self, name: &str) -> &MockFile {
        self.files
            .iter()
            .find(|f| f.name == name)
            .expect("no such mock file")
    }
}

/// How the server misbehaves.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Answer 200 with the whole file to Range requests.
    pub ignore_range: bool,
    /// Cut the next `cut_gets` file GET bodies after `cut_after` bytes.
    pub cut_gets: usize,
    pub cut_after: usize,
    /// Cut the next file GET body after this many bytes, then die: from then
    /// on every connection is closed at once, unanswered (the port stays
    /// taken, so no other test's server can get it).
    pub die_after: Option<usize>,
    /// Send the next file GET body's first bytes, this many, then hold the
    /// connection open while `stalling` stays true (at most 60 s).
    pub stall_after: Option<usize>,
    pub stalling: bool,
}

#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub auth: Option<String>,
}

#[derive(Default)]
struct State {
    repos: Vec<MockRepo>,
    renamed: HashMap<String, String>,
    behaviour: Behaviour,
    log: Vec<Logged>,
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
    dead: AtomicBool,
    addr: SocketAddr,
    base: String,
}

pub struct MockHub {
    pub url: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl MockHub {
    pub fn start(repos: Vec<MockRepo>) -> MockHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://{addr}");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                repos,
                ..State::default()
            }),
            stop: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            addr,
            base: base.clone(),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if s.dead.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let s = s.clone();
                std::thread::spawn(move || handle(stream, &s));
            }
        });
        MockHub {
            url: base,
            shared,
            thread: Some(thread),
        }
    }

    pub fn set_behaviour(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.shared.state.lock().unwrap().behaviour);
    }

    pub fn rename(&self, old: &str, new: &str) {
        let mut st = self.shared.state.lock().unwrap();
        st.renamed.insert(old.to_string(), new.to_string());
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.shared.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.shared.state.lock().unwrap().log.clear();
    }

    /// GETs of file content (resolve URLs and CDN blobs).
    pub fn file_gets(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && !r.path.starts_with("/api/"))
            .collect()
    }

    /// Makes the server unreachable (connections closed unanswered).
    pub fn kill(&self) {
        self.shared.dead.store(true, Ordering::SeqCst);
    }

    pub fn is_dead(&self) -> bool {
        self.shared.dead.load(Ordering::SeqCst)
    }

    pub fn shutdown(&mut self) {
        stop(&self.shared);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn stop(shared: &Shared) {
    shared.stop.store(true, Ordering::SeqCst);
    // Wake the accept loop.
    let _ = TcpStream::connect_timeout(&shared.addr, Duration::from_secs(1));
}

fn handle(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return; // a wake-up connection
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let req = Logged {
        method,
        path,
        range: headers.get("range").cloned(),
        auth: headers.get("authorization").cloned(),
    };
    shared.state.lock().unwrap().log.push(req.clone());
    let resp = route(&req, shared);
    send(stream, &req, resp, shared);
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// A file body (subject to cutting).
    file_body: bool,
}

impl Resp {
    fn new(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            file_body: false,
        }
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Resp {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    fn body(mut self, b: impl Into<Vec<u8>>) -> Resp {
        self.body = b.into();
        self
    }

    fn error(status: u16, code: &str, message: &str) -> Resp {
        Resp::new(status)
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
            .header("Content-Type", "application/json")
            .body(format!("{{\"error\":\"{message}\"}}"))
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route(req: &Logged, shared: &Shared) -> Resp {
    let st = shared.state.lock().unwrap();
    let path = req.path.split('?').next().unwrap_or("");
    let authorized = req.auth.as_deref() == Some(&format!("Bearer {GOOD_TOKEN}"));

    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some((repo_id, rev)) = rest.split_once("/revision/") else {
            return Resp::new(404);
        };
        let rev = decode(rev);
        let Some(repo) = st.repos.iter().find(|r| r.id == repo_id) else {
            return Resp::error(404, "RepoNotFound", "Repository not found");
        };
        if repo.gated && !authorized {
            return Resp::error(401, "GatedRepo", "Access to this model is restricted");
        }
        if rev != "main" && rev != repo.commit {
            return Resp::error(404, "RevisionNotFound", "Invalid rev id");
        }
        let siblings: Vec<String> = repo
            .files
            .iter()
            .map(|f| {
                format!(
                    "{{\"rfilename\":\"{}\",\"size\":{}}}",
                    f.name,
                    f.content.len()
                )
            })
            .collect();
        let json = format!(
            "{{\"id\":\"{}\",\"sha\":\"{}\",\"private\":false,\"siblings\":[{}]}}",
            repo.id,
            repo.commit,
            siblings.join(",")
        );
        return Resp::new(200)
            .header("Content-Type", "application/json")
            .body(json);
    }

    if let Some(etag) = path.strip_prefix("/blobs/") {
        let file = st
            .repos
            .iter()
            .flat_map(|r| r.files.iter())
            .find(|f| f.lfs && f.etag() == etag);
        return match file {
            Some(f) => {
                content(req, &f.served(), &st.behaviour).header("ETag", format!("\"{}\"", f.etag()))
            }
            None => Resp::new(404),
        };
    }

    // /{org}/{name}/resolve/{rev}/{file...}
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if segs.len() == 5 && segs[2] == "resolve" {
        let repo_id = format!("{}/{}", segs[0], segs[1]);
        let rev = decode(segs[3]);
        let filename = decode(segs[4]);
        if let Some(new) = st.renamed.get(&repo_id) {
            return Resp::new(307).header(
                "Location",
                format!("/{new}/resolve/{}/{}", segs[3], segs[4]),
            );
        }
        let Some(repo) = st.repos.iter().find(|r| r.id == repo_id) else {
            return Resp::error(404, "RepoNotFound", "Repository not found");
        };
        if repo.gated && !authorized {
            return Resp::error(401, "GatedRepo", "Access to this model is restricted");
        }
        if rev != "main" && rev != repo.commit {
            return Resp::error(404, "RevisionNotFound", "Invalid rev id");
        }
        let Some(file) = repo.files.iter().find(|f| f.name == filename) else {
            return Resp::error(404, "EntryNotFound", "Entry not found")
                .header("X-Repo-Commit", repo.commit.clone());
        };
        let size = file
            .advertised_size
            .unwrap_or(file.content.len() as u64)
            .to_string();
        if file.lfs {
            let location = format!("{}/blobs/{}?sig=abc", shared.base, file.etag());
            return Resp::new(302)
                .header("Location", location.clone())
                .header("X-Repo-Commit", repo.commit.clone())
                .header("X-Linked-Etag", format!("\"{}\"", file.etag()))
                .header("X-Linked-Size", size)
                .header("ETag", "\"not-the-blob-etag\"")
                .body(format!("Found. Redirecting to {location}"));
        }
        let mut resp = content(req, &file.served(), &st.behaviour)
            .header("X-Repo-Commit", repo.commit.clone())
            .header("ETag", format!("W/\"{}\"", file.etag()));
        if file.advertised_size.is_some() && req.method == "HEAD" {
            resp = resp.header("X-Linked-Size", size);
        }
        return resp;
    }
    Resp::new(404)
}

/// A file body, honouring `Range: bytes=N-` unless told not to.
fn content(req: &Logged, data: &[u8], b: &Behaviour) -> Resp {
    let start = req
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let mut resp = match start {
        Some(n) if !b.ignore_range => {
            if n >= data.len() {
                return Resp::new(416).header("Content-Range", format!("bytes */{}", data.len()));
            }
            Resp::new(206)
                .header(
                    "Content-Range",
                    format!("bytes {n}-{}/{}", data.len() - 1, data.len()),
                )
                .body(&data[n..])
        }
        _ => Resp::new(200).body(data),
    };
    resp.file_body = true;
    resp.header("Accept-Ranges", "bytes")
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Whatever",
    }
}

fn send(mut stream: TcpStream, req: &Logged, resp: Resp, shared: &Shared) {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        resp.body.len()
    ));
    if stream.write_all(head.as_bytes()).is_err() || req.method == "HEAD" {
        return;
    }
    let mut cut = None;
    let mut kill = false;
    let mut stall = false;
    if resp.file_body && req.method == "GET" {
        let mut st = shared.state.lock().unwrap();
        let b = &mut st.behaviour;
        if let Some(n) = b.stall_after.take() {
            cut = Some(n);
            stall = true;
            b.stalling = true;
        } else if let Some(n) = b.die_after.take() {
            cut = Some(n);
            kill = true;
        } else if b.cut_gets > 0 {
            b.cut_gets -= 1;
            cut = Some(b.cut_after);
        }
    }
    let n = cut.unwrap_or(resp.body.len()).min(resp.body.len());
    let _ = stream.write_all(&resp.body[..n]);
    let _ = stream.flush();
    let t0 = std::time::Instant::now();
    while stall
        && shared.state.lock().unwrap().behaviour.stalling
        && t0.elapsed() < std::time::Duration::from_secs(60)
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if kill {
        shared.dead.store(true, Ordering::SeqCst);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// `org/model` with an LFS weight file, a plain config, and nested files.
pub fn standard_repo() -> MockRepo {
    MockRepo::new(
        "org/model",
        COMMIT,
        vec![
            MockFile::lfs("model.gguf", bytes(700_000, 1)),
            MockFile::regular("config.json", b"{\"hidden_size\": 64}\n".to_vec()),
            MockFile::regular("tokenizer/tokenizer.json", b"{\"model\": {}}".to_vec()),
            MockFile::lfs("sub/dir/weights.bin", bytes(300_000, 2)),
        ],
    )
}

pub fn repo_dir(cache: &std::path::Path, repo_id: &str) -> std::path::PathBuf {
    cache.join(format!("models--{}", repo_id.replace('/', "--")))
}
