//! What a guest may touch outside its sandbox: its stdout and stderr, which become `tracing`
//! events tagged with function, version and request id ([`GuestLog`]); and outgoing HTTP, which
//! is denied ([`DenyOutgoingHttp`]) until a grant exists.

use bytes::Bytes;
use parking_lot::Mutex;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// A guest line longer than this is logged in pieces.
const MAX_LINE: usize = 8 << 10;
/// Output past this per stream and invocation is dropped (with one warning), so a chatty guest
/// cannot flood the host's logs.
const MAX_OUTPUT_PER_INVOCATION: usize = 1 << 20;

/// Who is writing: attached to every line a guest prints.
#[derive(Debug)]
pub struct InvocationTags {
    pub function: Arc<str>,
    pub version: u32,
    pub request_id: String,
    /// Secret values to replace with `[redacted]` in what the guest prints.
    pub secrets: Arc<[String]>,
    /// The invocation's place in its trace: the parent of its host calls' spans, and what its
    /// outgoing requests carry as `traceparent`.
    pub trace: crate::telemetry::TraceContext,
}

/// Which of the guest's two output streams.
#[derive(Debug, Clone, Copy)]
pub enum GuestStream {
    Stdout,
    Stderr,
}

/// A guest output stream that turns lines into log events. Clones share one buffer, because the
/// guest may open its stdout more than once.
#[derive(Clone)]
pub struct GuestLog {
    inner: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    tags: Arc<InvocationTags>,
    stream: GuestStream,
    pending: Vec<u8>,
    written: usize,
}

impl GuestLog {
    pub fn new(tags: Arc<InvocationTags>, stream: GuestStream) -> Self {
        let buffer = LineBuffer { tags, stream, pending: Vec::new(), written: 0 };
        Self { inner: Arc::new(Mutex::new(buffer)) }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        self.inner.lock().push(bytes);
    }

    /// A reused instance's next invocation: what the last one left unfinished is logged under
    /// its own tags, and the output budget starts again.
    pub fn retag(&self, tags: Arc<InvocationTags>) {
        let mut buffer = self.inner.lock();
        buffer.emit_rest();
        buffer.tags = tags;
        buffer.written = 0;
    }
}

impl LineBuffer {
    fn push(&mut self, mut bytes: &[u8]) {
        let room = MAX_OUTPUT_PER_INVOCATION.saturating_sub(self.written);
        if room == 0 {
            return;
        }
        if bytes.len() > room {
            bytes = &bytes[..room];
            self.written = MAX_OUTPUT_PER_INVOCATION;
            self.pending.extend_from_slice(bytes);
            self.emit_lines();
            // What follows the cut is dropped, so a secret's first bytes before it must go too.
            let cut = safe_cut(&self.pending, self.pending.len(), &self.tags.secrets);
            self.pending.truncate(cut);
            self.emit_rest();
            let t = &self.tags;
            tracing::warn!(function = %t.function, version = t.version, request_id = %t.request_id,
                "guest output over {MAX_OUTPUT_PER_INVOCATION} bytes; the rest of it is dropped");
            return;
        }
        self.written += bytes.len();
        self.pending.extend_from_slice(bytes);
        self.emit_lines();
        // Secrets are longest first; a piece must be able to hold the longest whole.
        let limit = MAX_LINE.max(self.tags.secrets.first().map_or(0, String::len));
        while self.pending.len() >= limit {
            let cut = safe_cut(&self.pending, limit, &self.tags.secrets);
            if cut == 0 {
                break; // only overlapping secrets get here: wait for the line's end
            }
            let piece: Vec<u8> = self.pending.drain(..cut).collect();
            self.emit(&piece);
        }
    }

    fn emit_lines(&mut self) {
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.emit(&line[..end]);
        }
    }

    fn emit_rest(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = redact(line.trim_end_matches('\r'), &self.tags.secrets);
        let t = &self.tags;
        let stderr = matches!(self.stream, GuestStream::Stderr);
        crate::function_logs::FunctionLogs::global().guest_line(&t.function, t.version, &t.request_id, stderr, &line);
        match self.stream {
            GuestStream::Stdout => tracing::info!(target: "guest", function = %t.function, version = t.version,
                request_id = %t.request_id, stream = "stdout", "{line}"),
            GuestStream::Stderr => tracing::warn!(target: "guest", function = %t.function, version = t.version,
                request_id = %t.request_id, stream = "stderr", "{line}"),
        }
    }
}

/// Where to cut `pending` (a line too long to log whole) at most `limit` bytes in: never inside
/// a secret, which would then be logged in two halves, neither redacted, and never before a tail
/// that may be the start of a secret still being written; nor inside a UTF-8 character. With
/// `limit` at least the longest secret, the cut is past 0 whenever `pending` reaches `limit`.
fn safe_cut(pending: &[u8], limit: usize, secrets: &[String]) -> usize {
    let len = pending.len();
    let mut cut = limit.min(len);
    loop {
        let before = cut;
        for secret in secrets.iter().map(|s| s.as_bytes()) {
            let l = secret.len();
            // A whole occurrence starting before the cut and ending after it.
            let (from, to) = (cut.saturating_sub(l - 1), len.min(cut + l - 1));
            if let Some(at) = pending.get(from..to).and_then(|window| find(window, secret)) {
                cut = cut.min(from + at);
            }
            // A tail shorter than the secret that is its beginning: the rest may follow.
            if let Some(start) = (len.saturating_sub(l - 1)..cut).find(|&at| secret.starts_with(&pending[at..])) {
                cut = start;
            }
        }
        if cut == before {
            break;
        }
    }
    while cut > 0 && cut < len && (pending[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    cut
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `line` with every secret value replaced (pieces of a long line are cut around secrets, see
/// [`safe_cut`], so a value is always whole within what is redacted).
fn redact<'a>(line: &'a str, secrets: &[String]) -> std::borrow::Cow<'a, str> {
    let mut line = std::borrow::Cow::Borrowed(line);
    for secret in secrets {
        if line.contains(secret.as_str()) {
            line = std::borrow::Cow::Owned(line.replace(secret.as_str(), "[redacted]"));
        }
    }
    line
}

impl Drop for LineBuffer {
    /// A last line without a newline is still logged when the instance goes away.
    fn drop(&mut self) {
        self.emit_rest();
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: writes only append to a buffer.
        Ok(MAX_LINE)
    }
}

impl AsyncWrite for GuestLog {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `wasi:http` hooks that refuse every outgoing request: guests get no network unless granted.
#[derive(Default)]
pub struct DenyOutgoingHttp;

type SendResult = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>), HttpError>;

impl WasiHttpHooks for DenyOutgoingHttp {
    fn send_request(
        &mut self,
        _request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_redacted() {
        let secrets = vec!["hunter22".to_owned(), "abc".to_owned()];
        assert_eq!(super::redact("token=hunter22; abc!", &secrets), "token=[redacted]; [redacted]!");
        assert!(matches!(super::redact("nothing here", &secrets), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn a_long_line_is_never_cut_inside_a_secret() {
        let secrets = vec!["s3cr3t-value".to_owned()];
        // Whole occurrence across the limit: cut before it.
        let line = b"aaaaaaaaas3cr3t-value";
        assert_eq!(super::safe_cut(line, 12, &secrets), 9);
        // A tail that may be the start of the secret: held back.
        assert_eq!(super::safe_cut(b"aaaas3cr", 8, &secrets), 4);
        // Nothing in the way: cut at the limit; never inside a UTF-8 character.
        assert_eq!(super::safe_cut(b"aaaaaaaaaaaa", 8, &secrets), 8);
        assert_eq!(super::safe_cut("aaaaaaaé".as_bytes(), 8, &[]), 7);
    }
}
