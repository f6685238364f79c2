//! One log line per request: method, path, status, prompt and generated
//! tokens, finish reason and time, as text or JSON (for log shippers).
//!
//! A request's [`Record`] is shared (`Arc`) by everything that works on the
//! request: the middleware that saw it arrive, the handler, the streamed
//! body and the engine's sink. The line is written when the last of them
//! lets go, which is exactly when the request is over: a whole answer once
//! it is sent, a stream once it has ended — or once the client went away
//! and the engine has freed the slot, so even a cancelled stream reports
//! the tokens it generated.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// How request log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// No request log.
    Off,
    /// `2026-01-02T03:04:05.678Z POST /v1/completions 200 prompt=9 generated=16 finish=length 0.412s`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where log lines go (stderr unless told otherwise); cheap to clone.
#[derive(Clone)]
pub struct LogTarget(Arc<dyn Fn(&str) + Send + Sync>);

impl LogTarget {
    /// Standard error.
    pub fn stderr() -> LogTarget {
        LogTarget(Arc::new(|line| eprintln!("{line}")))
    }

    /// A function that takes each line (without its newline).
    pub fn new(write: impl Fn(&str) + Send + Sync + 'static) -> LogTarget {
        LogTarget(Arc::new(write))
    }
}

impl Default for LogTarget {
    fn default() -> Self {
        LogTarget::stderr()
    }
}

impl std::fmt::Debug for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogTarget")
    }
}

/// The logger the middleware uses.
#[derive(Clone, Debug)]
pub struct RequestLog {
    pub format: LogFormat,
    pub target: LogTarget,
}

/// What is known about one request; logged when dropped.
pub struct Record {
    log: RequestLog,
    method: String,
    path: String,
    start: Instant,
    /// 0 until the response head is out.
    status: AtomicU16,
    prompt_tokens: AtomicUsize,
    completion_tokens: AtomicUsize,
    /// Set for generation requests.
    generates: AtomicBool,
    stream: AtomicBool,
    finish: Mutex<Option<&'static str>>,
}

impl Record {
    /// The prompt's length, once tokenised.
    pub fn prompt(&self, tokens: usize) {
        self.generates.store(true, Ordering::Relaxed);
        self.prompt_tokens.store(tokens, Ordering::Relaxed);
    }

    /// A sequence of the request ended (`n > 1` requests have several).
    pub fn sequence_done(&self, completion_tokens: usize, finish: &'static str) {
        self.completion_tokens
            .fetch_add(completion_tokens, Ordering::Relaxed);
        let mut f = self.finish.lock().unwrap_or_else(|e| e.into_inner());
        // "stop" < "length" < anything unusual: keep the most telling.
        let rank = |r: Option<&str>| match r {
            None => 0,
            Some("stop") => 1,
            Some("length") => 2,
            Some(_) => 3,
        };
        if rank(Some(finish)) > rank(*f) {
            *f = Some(finish);
        }
    }

    /// The answer is streamed.
    pub fn streamed(&self) {
        self.stream.store(true, Ordering::Relaxed);
    }

    fn line(&self) -> String {
        let status = self.status.load(Ordering::Relaxed);
        let secs = self.start.elapsed().as_secs_f64();
        let generates = self.generates.load(Ordering::Relaxed);
        let finish = *self.finish.lock().unwrap_or_else(|e| e.into_inner());
        // A generation that never finished: the client left first.
        let finish = finish.or((generates && status < 400).then_some("disconnected"));
        let prompt = self.prompt_tokens.load(Ordering::Relaxed);
        let generated = self.completion_tokens.load(Ordering::Relaxed);
        let stream = self.stream.load(Ordering::Relaxed);
        let time = rfc3339_now();
        match self.log.format {
            LogFormat::Json => {
                let mut v = serde_json::json!({
                    "time": time,
                    "method": self.method,
                    "path": self.path,
                    "status": if status == 0 { None } else { Some(status) },
                    "duration_ms": (secs * 1e6).round() / 1e3,
                });
                if generates {
                    v["prompt_tokens"] = prompt.into();
                    v["completion_tokens"] = generated.into();
                    v["finish_reason"] = finish.into();
                    v["stream"] = stream.into();
                }
                v.to_string()
            }
            LogFormat::Text | LogFormat::Off => {
                let mut s = format!("{time} {} {} ", self.method, self.path);
                if status == 0 {
                    s.push('-');
                } else {
                    let _ = write!(s, "{status}");
                }
                if generates {
                    let _ = write!(s, " prompt={prompt} generated={generated}");
                    if let Some(f) = finish {
                        let _ = write!(s, " finish={f}");
                    }
                    if stream {
                        s.push_str(" stream");
                    }
                }
                let _ = write!(s, " {secs:.3}s");
                s
            }
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if self.log.format != LogFormat::Off {
            (self.log.target.0)(&self.line());
        }
    }
}

/// The middleware: a [`Record`] for every request, in its extensions.
pub async fn middleware(State(log): State<RequestLog>, mut req: Request, next: Next) -> Response {
    let record = Arc::new(Record {
        log,
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        start: Instant::now(),
        status: AtomicU16::new(0),
        prompt_tokens: AtomicUsize::new(0),
        completion_tokens: AtomicUsize::new(0),
        generates: AtomicBool::new(false),
        stream: AtomicBool::new(false),
        finish: Mutex::new(None),
    });
    req.extensions_mut().insert(Arc::clone(&record));
    let response = next.run(req).await;
    record
        .status
        .store(response.status().as_u16(), Ordering::Relaxed);
    response
}

/// The time now as RFC 3339 UTC with milliseconds.
fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
