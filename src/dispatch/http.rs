//! What every wire protocol shares: sending a request and turning transport
//! failures and error statuses into [`DispatchError`]s, reading the body, and
//! splitting an SSE body into events for a protocol's parser.

use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource as _};
use futures::StreamExt;

use super::{DispatchError, EventStream, StreamEvent, Timeouts};

/// Longest provider error body kept in messages and logs.
const MAX_ERROR_BODY: usize = 512;

/// Sends and checks the status: the one path from a request to a successful
/// response head for every adapter, plain or streamed. `timeout` (the
/// attempt's first-byte bound) covers the head only (a body may take longer;
/// its reader bounds it), and reading an error body.
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

/// Sends and reads the whole body: the head within `t.first_byte`, all of
/// it within `t.total`.
pub(super) async fn send_body(
    rb: reqwest::RequestBuilder,
    t: Timeouts,
) -> Result<bytes::Bytes, DispatchError> {
    let started = tokio::time::Instant::now();
    let resp = send(rb, t.first_byte.min(t.total)).await?;
    tokio::time::timeout_at(started + t.total, resp.bytes())
        .await
        .map_err(|_| DispatchError::Timeout(t.total))?
        .map_err(|e| transport_error(e, t.total))
}

/// A provider's JSON body as `T`, or why it is not one.
pub(super) fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DispatchError> {
    serde_json::from_slice(body).map_err(|e| DispatchError::Malformed(e.to_string()))
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

/// Relays an SSE response through `parser`. Framing (multi-line `data:`,
/// CR or CRLF line ends, a BOM, comments) is `eventsource-stream`'s; what an
/// event means is the protocol's. The stream ends with the parser's final
/// event, or with an error if the body breaks off, carries a malformed event,
/// ends before the protocol's terminator or, once it has sent an event, sends
/// nothing for `t.idle` (the first event is the caller's to bound).
pub(super) fn sse<P: SseParser>(
    resp: reqwest::Response,
    t: Timeouts,
    mut parser: P,
) -> EventStream {
    let mut events = Box::pin(without_bom(resp.bytes_stream())).eventsource();
    async_stream::stream! {
        let mut started = false;
        loop {
            let next = match t.idle.filter(|_| started) {
                Some(idle) => match tokio::time::timeout(idle, events.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        yield Err(DispatchError::Stalled(idle));
                        return;
                    }
                },
                None => events.next().await,
            };
            started = true;
            let ev = match next {
                Some(Ok(ev)) => ev,
                Some(Err(EventStreamError::Transport(e))) => {
                    yield Err(DispatchError::Stream(transport_error(e, t.total).to_string()));
                    return;
                }
                Some(Err(e)) => {
                    yield Err(DispatchError::Malformed(format!("bad event stream: {e}")));
                    return;
                }
                None => {
                    yield Err(DispatchError::Stream(format!("ended before {}", P::TERMINATOR)));
                    return;
                }
            };
            // An event without an `event:` field is named "message" by the
            // SSE rules; our parsers see it as unnamed.
            let name = (ev.event != "message").then_some(ev.event.as_str());
            match parser.feed(name, &ev.data) {
                Ok((out, done)) => {
                    for e in out { yield Ok(e); }
                    if done {
                        yield Ok(parser.finish());
                        return;
                    }
                }
                Err(e) => { yield Err(e); return; }
            }
        }
    }
    .boxed()
}

/// The body with a leading UTF-8 byte-order mark removed. eventsource-stream
/// 0.2.3 strips a BOM itself by slicing off one byte of its three and panics,
/// so it must never see one; the SSE rules say to ignore it, which this does.
fn without_bom<S>(body: S) -> impl futures::Stream<Item = Result<bytes::Bytes, reqwest::Error>>
where
    S: futures::Stream<Item = Result<bytes::Bytes, reqwest::Error>>,
{
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    async_stream::stream! {
        let mut body = std::pin::pin!(body);
        let mut head: Vec<u8> = Vec::new();
        // A BOM may arrive split over chunks: gather three bytes first.
        while head.len() < BOM.len() {
            match body.next().await {
                Some(Ok(b)) => head.extend_from_slice(&b),
                Some(Err(e)) => {
                    yield Err(e);
                    return;
                }
                None => break,
            }
        }
        let skip = if head.starts_with(BOM) { BOM.len() } else { 0 };
        if head.len() > skip {
            yield Ok(bytes::Bytes::from(head.split_off(skip)));
        }
        while let Some(chunk) = body.next().await {
            yield chunk;
        }
    }
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

    /// Records what it is fed; done at `data: [END]`.
    #[derive(Default)]
    struct Recorder;

    impl SseParser for Recorder {
        fn feed(
            &mut self,
            event: Option<&str>,
            data: &str,
        ) -> Result<(Vec<StreamEvent>, bool), DispatchError> {
            if data == "[END]" {
                return Ok((Vec::new(), true));
            }
            let seen = format!("{}|{data}", event.unwrap_or("-"));
            Ok((vec![StreamEvent::Delta(seen)], false))
        }
        fn finish(&mut self) -> StreamEvent {
            StreamEvent::Done {
                finish_reason: "stop".into(),
                usage: None,
            }
        }
        const TERMINATOR: &'static str = "[END]";
    }

    async fn relay(body: &'static str) -> Vec<Result<StreamEvent, DispatchError>> {
        let resp = reqwest::Response::from(axum::http::Response::new(body));
        sse(resp, Duration::from_secs(1).into(), Recorder)
            .collect()
            .await
    }

    #[tokio::test]
    async fn sse_framing_follows_the_spec() {
        // A BOM, CR and CRLF line ends, a comment, a named event, and one
        // event's data over two lines.
        let body = "\u{feff}data: one\r\rdata: two\r\ndata: lines\r\n\r\n: ping\n\nevent: delta\ndata: {\"a\":1}\n\ndata: [END]\n\n";
        let got: Vec<String> = relay(body)
            .await
            .into_iter()
            .map(|e| match e.unwrap() {
                StreamEvent::Delta(d) => d,
                StreamEvent::ToolCall(c) => format!("call {c:?}"),
                StreamEvent::Done { .. } => "done".into(),
            })
            .collect();
        assert_eq!(got, ["-|one", "-|two\nlines", "delta|{\"a\":1}", "done"]);
    }

    #[tokio::test]
    async fn a_bom_split_over_chunks_is_ignored() {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
            ["\u{feff}data: x\n\ndata: [END]\n\n"]
                .iter()
                .flat_map(|s| {
                    s.as_bytes()
                        .chunks(2)
                        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                        .collect::<Vec<_>>()
                })
                .collect();
        let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
        let resp = reqwest::Response::from(axum::http::Response::new(body));
        let got: Vec<_> = sse(resp, Duration::from_secs(1).into(), Recorder)
            .collect()
            .await;
        assert!(
            matches!(&got[0], Ok(StreamEvent::Delta(d)) if d == "-|x"),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn an_sse_body_that_ends_early_is_an_error() {
        let got = relay("data: one\n\n").await;
        assert!(matches!(got.last(), Some(Err(DispatchError::Stream(m))) if m.contains("[END]")));
    }

    #[test]
    fn retry_after_takes_seconds_and_ignores_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
