//! A tiny threaded HTTP/1.1 server on 127.0.0.1 that emulates the parts of
//! the Hugging Face Hub that `bitnet pull` and `bitnet run -m org/name` use
//! (a trimmed copy of the hub crate's test server, without the misbehaviour
//! knobs):
//!
//! - `GET /api/models/{org}/{name}/revision/{rev}`: repo info JSON (`sha`
//!   and `siblings`).
//! - `HEAD|GET /{org}/{name}/resolve/{rev}/{file}`: regular files answer 200
//!   with a weak `ETag` (a 40-hex git blob id) and `X-Repo-Commit`; LFS files
//!   answer 302 to an absolute `/blobs/{sha256}` URL (a stand-in for the CDN)
//!   with `X-Linked-Etag`, `X-Linked-Size` and `X-Repo-Commit`.
//! - `HEAD|GET /blobs/{sha256}`: LFS content.
//! - `Range: bytes=N-` gets 206 with the rest of the file.
//! - 404 with `X-Error-Code` for unknown repos, revisions and files.
//!
//! Every connection carries one request (`Connection: close`), and every
//! request is logged.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

#[derive(Clone, Debug)]
pub struct MockFile {
    pub name: String,
    pub content: Vec<u8>,
    /// Served through a redirect to `/blobs/<sha256>` like LFS files.
    pub lfs: bool,
}

impl MockFile {
    pub fn regular(name: &str, content: impl Into<Vec<u8>>) -> MockFile {
        MockFile {
            name: name.to_string(),
            content: content.into(),
            lfs: false,
        }
    }

    pub fn lfs(name: &str, content: impl Into<Vec<u8>>) -> MockFile {
        MockFile {
            lfs: true,
            ..MockFile::regular(name, content)
        }
    }

    /// The etag the Hub gives: the SHA-256 of the content for LFS files, the
    /// 40-hex git blob id otherwise (here a truncated SHA-256 of the git
    /// blob, which has the same shape).
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
}

#[derive(Clone, Debug)]
pub struct MockRepo {
    pub id: String,
    pub commit: String,
    pub files: Vec<MockFile>,
}

impl MockRepo {
    pub fn new(id: &str, commit: &str, files: Vec<MockFile>) -> MockRepo {
        MockRepo {
            id: id.to_string(),
            commit: commit.to_string(),
            files,
        }
    }

    pub fn file(&self, name: &str) -> &MockFile {
        self.files
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no mock file {name}"))
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
}

struct Shared {
    repos: Vec<MockRepo>,
    log: Mutex<Vec<Logged>>,
    stop: AtomicBool,
    addr: SocketAddr,
    base: String,
}

pub struct MockHub {
    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
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
            repos,
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
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

    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    /// GETs of file content (resolve URLs and CDN blobs).
    pub fn file_gets(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && !r.path.starts_with("/api/"))
            .collect()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.shared.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    let req = Logged {
        method,
        path,
        range,
    };
    shared.log.lock().unwrap().push(req.clone());
    send(stream, &req, route(&req, shared));
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn new(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Vec::new(),
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

    fn error(code: &str, message: &str) -> Resp {
        Resp::new(404)
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
            .header("Content-Type", "application/json")
            .body(format!("{{\"error\":\"{message}\"}}"))
    }
}

fn route(req: &Logged, shared: &Shared) -> Resp {
    let path = req.path.split('?').next().unwrap_or("");
    let find_repo = |id: &str| shared.repos.iter().find(|r| r.id == id);

    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some((repo_id, rev)) = rest.split_once("/revision/") else {
            return Resp::new(404);
        };
        let Some(repo) = find_repo(repo_id) else {
            return Resp::error("RepoNotFound", "Repository not found");
        };
        if rev != "main" && rev != repo.commit {
            return Resp::error("RevisionNotFound", "Invalid rev id");
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
        let file = shared
            .repos
            .iter()
            .flat_map(|r| r.files.iter())
            .find(|f| f.lfs && f.etag() == etag);
        return match file {
            Some(f) => content(req, &f.content).header("ETag", format!("\"{}\"", f.etag())),
            None => Resp::new(404),
        };
    }

    // /{org}/{name}/resolve/{rev}/{file...}
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if segs.len() == 5 && segs[2] == "resolve" {
        let repo_id = format!("{}/{}", segs[0], segs[1]);
        let (rev, filename) = (segs[3], segs[4]);
        let Some(repo) = find_repo(&repo_id) else {
            return Resp::error("RepoNotFound", "Repository not found");
        };
        if rev != "main" && rev != repo.commit {
            return Resp::error("RevisionNotFound", "Invalid rev id");
        }
        let Some(file) = repo.files.iter().find(|f| f.name == filename) else {
            return Resp::error("EntryNotFound", "Entry not found")
                .header("X-Repo-Commit", repo.commit.clone());
        };
        if file.lfs {
            let location = format!("{}/blobs/{}?sig=abc", shared.base, file.etag());
            return Resp::new(302)
                .header("Location", location.clone())
                .header("X-Repo-Commit", repo.commit.clone())
                .header("X-Linked-Etag", format!("\"{}\"", file.etag()))
                .header("X-Linked-Size", file.content.len().to_string())
                .header("ETag", "\"not-the-blob-etag\"")
                .body(format!("Found. Redirecting to {location}"));
        }
        return content(req, &file.content)
            .header("X-Repo-Commit", repo.commit.clone())
            .header("ETag", format!("W/\"{}\"", file.etag()));
    }
    Resp::new(404)
}

/// A file body, honouring `Range: bytes=N-`.
fn content(req: &Logged, data: &[u8]) -> Resp {
    let start = req
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let resp = match start {
        Some(n) if n >= data.len() => {
            return Resp::new(416).header("Content-Range", format!("bytes */{}", data.len()));
        }
        Some(n) => Resp::new(206)
            .header(
                "Content-Range",
                format!("bytes {n}-{}/{}", data.len() - 1, data.len()),
            )
            .body(&data[n..]),
        None => Resp::new(200).body(data),
    };
    resp.header("Accept-Ranges", "bytes")
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Whatever",
    }
}

fn send(mut stream: TcpStream, req: &Logged, resp: Resp) {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        resp.body.len()
    ));
    if stream.write_all(head.as_bytes()).is_ok() && req.method != "HEAD" {
        let _ = stream.write_all(&resp.body);
    }
    let _ = stream.flush();
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
