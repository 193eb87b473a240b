//! Fetching a URL into a partial file, resuming with HTTP range requests.
//!
//! The bytes go into `NAME.part`. When the connection breaks off, the next request asks for
//! the rest (`Range: bytes=N-`) and appends; a server that ignores ranges answers 200 and the
//! file starts over. A `.part` left by an earlier run is resumed the same way, so a
//! multi-gigabyte archive survives a flaky network or an interrupted command. Verifying
//! and renaming the finished file is the caller's job ([`crate::obtain`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::error::DownloadError;
use crate::progress::Progress;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Requests per file before giving up on a connection that keeps breaking off.
    pub attempts: u32,
    /// Pause before a retry (multiplied by the attempt number).
    pub pause: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions { attempts: 5, pause: Duration::from_secs(2) }
    }
}

/// Downloads `url` into `part`, resuming from the bytes already in it. Returns the file's
/// length. A local write error (a full disk) stops at once and keeps what was written.
pub fn fetch(url: &str, part: &Path, progress: &dyn Progress, options: &FetchOptions) -> Result<u64, DownloadError> {
    let client = client();
    let mut file = OpenOptions::new().create(true).append(true).open(part).map_err(|e| DownloadError::io(part, e))?;
    let mut have = file.metadata().map_err(|e| DownloadError::io(part, e))?.len();
    let mut last_error: Option<std::io::Error> = None;
    let mut total = None;
    for attempt in 1..=options.attempts.max(1) {
        if attempt > 1 {
            std::thread::sleep(options.pause * (attempt - 1));
        }
        let mut request = client.get(url);
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        let response = match request.call() {
            Ok(response) => response,
            // No answer at all: worth another try, like a broken-off body.
            Err(ureq::Error::Io(e)) => {
                last_error = Some(e);
                continue;
            }
            Err(e) => return Err(DownloadError::Http { url: url.to_string(), source: Box::new(e) }),
        };
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        match status {
            206 => {
                let range = header("content-range");
                match range.as_deref().and_then(parse_content_range) {
                    Some((start, whole)) if start == have => total = whole,
                    _ => return Err(DownloadError::BadRange { url: url.to_string(), asked: have, answer: range }),
                }
            }
            200 => {
                // The whole file from its start: either the first request, or a server that
                // does not do ranges.
                if have > 0 {
                    file.set_len(0).map_err(|e| DownloadError::io(part, e))?;
                    have = 0;
                }
                total = header("content-length").and_then(|v| v.parse().ok());
            }
            // The partial file is as long as the remote one or longer: it cannot be a prefix
            // of it, so start again.
            416 if have > 0 => {
                file.set_len(0).map_err(|e| DownloadError::io(part, e))?;
                have = 0;
                continue;
            }
            _ => return Err(DownloadError::Status { url: url.to_string(), status }),
        }
        progress.start(&format!("downloading {url}"), total, have);
        let mut body = response.into_body().into_reader();
        let outcome = copy(&mut body, &mut file, part, &mut have, progress);
        progress.finish();
        match outcome? {
            None if total.is_none_or(|t| have >= t) => return Ok(have),
            // The body ended early without an error: ask for the rest.
            None => last_error = Some(std::io::ErrorKind::UnexpectedEof.into()),
            Some(e) => last_error = Some(e),
        }
    }
    Err(DownloadError::Interrupted {
        url: url.to_string(),
        part: part.to_path_buf(),
        received: have,
        total,
        attempts: options.attempts.max(1),
        source: last_error.unwrap_or_else(|| std::io::ErrorKind::UnexpectedEof.into()),
    })
}

/// One HTTP client per download: ranges mean file offsets only without content encodings (so no
/// gzip), and statuses are looked at here rather than turned into errors.
fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(concat!("dmlbench/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// Copies the body into the file. A read error (the connection broke off) is returned as
/// `Ok(Some(_))`, to be retried; a write error is final.
fn copy(
    body: &mut impl Read,
    file: &mut File,
    part: &Path,
    have: &mut u64,
    progress: &dyn Progress,
) -> Result<Option<std::io::Error>, DownloadError> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                file.flush().map_err(|e| DownloadError::io(part, e))?;
                return Ok(Some(e));
            }
        };
        file.write_all(&buf[..n]).map_err(|e| DownloadError::io(part, e))?;
        *have += n as u64;
        progress.advance(n as u64);
    }
    // Reported here, not lost when the file is dropped: a full disk can show at the flush.
    file.sync_all().map_err(|e| DownloadError::io(part, e))?;
    Ok(None)
}

/// `bytes START-END/TOTAL` → (START, TOTAL); TOTAL may be `*` (unknown).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, whole) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let whole = if whole.trim() == "*" { None } else { Some(whole.trim().parse().ok()?) };
    Some((start.trim().parse().ok()?, whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 5-9/10"), None);
        assert_eq!(parse_content_range("bytes */200"), None);
    }
}
