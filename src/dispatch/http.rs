//! What every wire protocol shares: sending a request and turning transport
//! failures and error statuses into [`DispatchError`]s, reading the body, and
//! splitting an SSE body into `data:` payloads for a protocol's parser.

use std::time::Duration;

use futures::StreamExt;

use super::{DispatchError, EventStream, StreamEvent};

/// Longest provider error body kept in messages and logs.
const MAX_ERROR_BODY: usize = 512;

/// Sends and checks the status: the one path from a request to a successful
/// response head for every adapter, plain or streamed. `timeout` bounds the
/// head only (a stream's body may take longer; its reader bounds it), and
/// reading an error body.
pub(super) async fn send(
    rb: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<reqwest::Response, DispatchError> {
    let head = async {
        let resp = rb.send().await.map_err(|e| transport_error(e, timeout))?;
        check_status(resp).await
    };
    tokio::time::timeout(timeout, head)
        .await
        .map_err(|_| DispatchError::Timeout(timeout))?
}

/// Sends and reads the whole body, parsed as `T`.
pub(super) async fn send_json<T: serde::de::DeserializeOwned>(
    rb: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<T, DispatchError> {
    let started = tokio::time::Instant::now();
    let resp = send(rb, timeout).await?;
    let bytes = tokio::time::timeout_at(started + timeout, resp.bytes())
        .await
        .map_err(|_| DispatchError::Timeout(timeout))?
        .map_err(|e| transport_error(e, timeout))?;
    serde_json::from_slice(&bytes).map_err(|e| DispatchError::Malformed(e.to_string()))
}

/// A protocol's reading of its SSE payloads.
pub(super) trait SseParser: Send + 'static {
    /// Handles one event (`event:` name, if any, and its `data:`); returns
    /// the events to emit and whether the stream is complete.
    fn feed(
        &mut self,
        event: Option<&str>,
        data: &str,
    ) -> Result<(Vec<StreamEvent>, bool), DispatchError>;

    /// The stream's final event once `feed` said it is complete.
    fn finish(&mut self) -> StreamEvent;

    /// What a body that ends early lacks, for the error message.
    const TERMINATOR: &'static str;
}

/// Relays an SSE response through `parser`. The stream ends with the
/// parser's final event, or with an error if the body breaks off, carries a
/// malformed event or ends before the protocol's terminator.
pub(super) fn sse<P: SseParser>(
    resp: reqwest::Response,
    timeout: Duration,
    mut parser: P,
) -> EventStream {
    let mut bytes = resp.bytes_stream();
    async_stream::stream! {
        let mut buf: Vec<u8> = Vec::new();
        let mut event: Option<String> = None;
        loop {
            // Handle every complete line in the buffer before reading more.
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end();
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_owned());
                    continue;
                }
                let Some(data) = line.strip_prefix("data:") else {
                    if line.is_empty() { event = None; }
                    continue;
                };
                match parser.feed(event.as_deref(), data.trim_start()) {
                    Ok((events, done)) => {
                        for e in events { yield Ok(e); }
                        if done {
                            yield Ok(parser.finish());
                            return;
                        }
                    }
                    Err(e) => { yield Err(e); return; }
                }
            }
            match bytes.next().await {
                Some(Ok(b)) => buf.extend_from_slice(&b),
                Some(Err(e)) => {
                    yield Err(DispatchError::Stream(transport_error(e, timeout).to_string()));
                    return;
                }
                None => {
                    yield Err(DispatchError::Stream(format!("ended before {}", P::TERMINATOR)));
                    return;
                }
            }
        }
    }
    .boxed()
}

pub(super) fn transport_error(e: reqwest::Error, timeout: Duration) -> DispatchError {
    if e.is_timeout() {
        DispatchError::Timeout(timeout)
    } else if e.is_connect() {
        DispatchError::Connect(e.to_string())
    } else {
        // Resets and bodies that break off: report the whole cause chain, the
        // top-level reqwest message alone says little.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        DispatchError::Stream(msg)
    }
}

async fn check_status(resp: reqwest::Response) -> Result<reqwest::Response, DispatchError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = resp.text().await.unwrap_or_default();
    // OpenAI and Anthropic put it at /error/message, Gemini too (with a code).
    let mut message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned))
        .unwrap_or(body);
    if message.len() > MAX_ERROR_BODY {
        let cut = (0..=MAX_ERROR_BODY)
            .rev()
            .find(|i| message.is_char_boundary(*i))
            .unwrap_or(0);
        message.truncate(cut);
    }
    Err(DispatchError::Status {
        status: status.as_u16(),
        message,
        retry_after,
    })
}

/// Retry-After as delay-seconds (fractions accepted: some providers send
/// them). The HTTP-date form is rare from LLM APIs and is ignored, so the
/// caller's own backoff applies.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_ignores_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
