//! Logs on stdout — JSON lines by default, plain text on request — through a
//! non-blocking writer, so a slow log sink never slows a request. Audit
//! events (target `sealgate::audit`) may also go to a file of their own. No
//! line is longer than a bound: an oversized one has its longest fields cut
//! and says so, and stays valid JSON.

use crate::redact::Redactor;
use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use crate::config::LogFormat;

/// Where and how to log.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// Audit events also appended here, as JSON lines.
    pub audit_file: Option<PathBuf>,
    /// The longest line written, in bytes.
    pub max_line: usize,
    /// Masks secrets and `[log] redact` names in every line.
    pub redact: Arc<Redactor>,
}

impl LogSettings {
    /// What a config's `[log]` asks for; `format` overrides its format.
    pub fn from_config(config: &crate::config::Config, format: Option<LogFormat>) -> LogSettings {
        let log = &config.log;
        LogSettings {
            format: format.unwrap_or(log.format),
            audit_file: log.audit_file.as_deref().map(|p| config.resolve(p)),
            max_line: usize::try_from(log.max_line.0).unwrap_or(usize::MAX),
            // An invalid list is refused when the config compiles; until
            // then the credentials are masked all the same.
            redact: Arc::new(log.redactor().unwrap_or_default()),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Json,
            audit_file: None,
            max_line: 16 * 1024,
            redact: Arc::default(),
        }
    }
}

/// Keep alive until exit, so buffered lines are flushed.
pub struct LogGuards(#[allow(dead_code)] Vec<WorkerGuard>);

/// JSON logs on stdout with the defaults; `None` when a subscriber was
/// already installed.
pub fn init() -> Option<LogGuards> {
    init_with(&LogSettings::default()).ok().flatten()
}

/// Installs the subscriber. `RUST_LOG` overrides the default level; `Err`
/// when the audit file cannot be opened.
pub fn init_with(s: &LogSettings) -> std::io::Result<Option<LogGuards>> {
    let (stdout, guard) = tracing_appender::non_blocking(std::io::stdout());
    let mut guards = vec![guard];
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let main = Bounded {
        inner: stdout,
        max: s.max_line,
        json: s.format == LogFormat::Json,
        redact: s.redact.clone(),
    };
    let main: Box<dyn Layer<_> + Send + Sync> = match s.format {
        LogFormat::Json => json_layer(main).boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_target(true)
            .with_writer(main)
            .boxed(),
    };
    let audit = match &s.audit_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            let (w, g) = tracing_appender::non_blocking(file);
            guards.push(g);
            let only_audit = tracing_subscriber::filter::filter_fn(|m| {
                m.target() == crate::telemetry::audit::TARGET
            });
            Some(
                json_layer(Bounded {
                    inner: w,
                    max: s.max_line,
                    json: true,
                    redact: s.redact.clone(),
                })
                .with_filter(only_audit),
            )
        }
        None => None,
    };
    let ok = tracing_subscriber::registry()
        .with(main.with_filter(filter))
        .with(audit)
        .try_init()
        .is_ok();
    Ok(ok.then_some(LogGuards(guards)))
}

fn json_layer<S>(w: Bounded) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_writer(w)
}

/// A writer that masks what `redact` names and keeps every line within
/// `max` bytes.
#[derive(Clone)]
struct Bounded {
    inner: NonBlocking,
    max: usize,
    json: bool,
    redact: Arc<Redactor>,
}

impl<'a> MakeWriter<'a> for Bounded {
    type Writer = BoundedLine;
    fn make_writer(&'a self) -> Self::Writer {
        BoundedLine(self.clone())
    }
}

/// One event's line (the formatter writes each event in one piece).
struct BoundedLine(Bounded);

impl Write for BoundedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let b = &mut self.0;
        let line = redacted(buf, &b.redact, b.json);
        if line.len() <= b.max {
            b.inner.write_all(&line)?;
        } else {
            let mut line = bound(&line, b.max, b.json);
            line.push(b'\n');
            b.inner.write_all(&line)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.inner.flush()
    }
}

/// `line` with what `redact` names masked. A JSON line is masked member by
/// member, so it stays valid JSON whatever the masked values held.
pub fn redacted<'l>(line: &'l [u8], redact: &Redactor, json: bool) -> Cow<'l, [u8]> {
    if !json {
        return redact.bytes(line);
    }
    // JSON escapes hide token boundaries (`\nAuthorization:`): any mention
    // sends the line through the member-by-member pass, on decoded strings.
    if !redact.mentions(line) {
        return Cow::Borrowed(line);
    }
    let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
    match serde_json::from_slice::<serde_json::Value>(trimmed) {
        Ok(mut v) => {
            redact.json(&mut v);
            let mut out = serde_json::to_vec(&v).unwrap_or_default();
            out.push(b'\n');
            Cow::Owned(out)
        }
        Err(_) => redact.bytes(line),
    }
}

/// `line` (without its newline) cut to at most `max` bytes. A JSON line
/// keeps its short fields and has its longest string values cut, with
/// `truncated` = the bytes it had; text is cut at a character boundary.
pub fn bound(line: &[u8], max: usize, json: bool) -> Vec<u8> {
    let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
    if json {
        if let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_slice(trimmed) {
            obj.insert("truncated".into(), trimmed.len().into());
            loop {
                let out = serde_json::to_vec(&obj).unwrap_or_default();
                if out.len() < max {
                    return out;
                }
                // The longest string value loses half (at least what is over).
                let longest = obj
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.len())))
                    .max_by_key(|(_, n)| *n);
                let Some((key, n)) = longest.filter(|(_, n)| *n > 16) else {
                    break;
                };
                let keep = n.saturating_sub((out.len() + 32 - max).max(n / 2));
                if let Some(serde_json::Value::String(v)) = obj.get_mut(&key) {
                    let cut = floor_char_boundary(v, keep);
                    v.truncate(cut);
                    v.push('…');
                }
            }
        }
        let head = String::from_utf8_lossy(&trimmed[..floor_bytes(trimmed, max / 2)]).into_owned();
        return serde_json::to_vec(&serde_json::json!({
            "message": "log line cut",
            "truncated": trimmed.len(),
            "head": head,
        }))
        .unwrap_or_default();
    }
    let note = format!(" …[cut, {} bytes]", trimmed.len());
    let keep = floor_bytes(trimmed, max.saturating_sub(note.len() + 1));
    let mut out = trimmed[..keep].to_vec();
    out.extend_from_slice(note.as_bytes());
    out
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    (0..=at.min(s.len()))
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0)
}

/// The longest prefix of `b` within `at` bytes that ends on a UTF-8 boundary.
fn floor_bytes(b: &[u8], at: usize) -> usize {
    let mut i = at.min(b.len());
    while i > 0 && i < b.len() && (b[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    i
}

/// A cap on log lines of one kind: refusals during a flood are counted, not
/// written, and the next line that passes says how many were left out.
pub struct LogGate {
    limiter: governor::DefaultDirectRateLimiter<
        governor::middleware::NoOpMiddleware<std::time::Instant>,
    >,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogGate {
    pub fn new(per_second: u32, burst: u32) -> LogGate {
        let q = governor::Quota::per_second(
            std::num::NonZeroU32::MIN.saturating_add(per_second.saturating_sub(1)),
        )
        .allow_burst(std::num::NonZeroU32::MIN.saturating_add(burst.saturating_sub(1)));
        LogGate {
            limiter: governor::RateLimiter::direct(q),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one written)` when this line may be written.
    pub fn admit(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        if self.limiter.check().is_ok() {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_counted_not_written() {
        let gate = LogGate::new(1, 5);
        let written = (0..1000).filter(|_| gate.admit().is_some()).count();
        assert_eq!(written, 5);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        // The next line that passes reports how many were left out.
        assert_eq!(gate.admit(), Some(995));
        assert_eq!(gate.admit(), None);
    }

    #[test]
    fn an_oversized_json_line_stays_json_within_the_bound() {
        let long = "é".repeat(20_000);
        let line = serde_json::to_vec(
            &serde_json::json!({"message": "request", "path": "/x", "detail": long}),
        )
        .unwrap();
        let out = bound(&line, 1024, true);
        assert!(out.len() <= 1024, "{}", out.len());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["message"], "request");
        assert_eq!(v["path"], "/x");
        assert_eq!(v["truncated"], line.len());
        assert!(v["detail"].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn an_oversized_text_line_is_cut_on_a_character() {
        let line = format!("INFO sealgate: {}", "ü".repeat(5000));
        let out = bound(line.as_bytes(), 1000, false);
        assert!(out.len() <= 1000);
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with(&format!("…[cut, {} bytes]", line.len())), "{s}");
    }
}
