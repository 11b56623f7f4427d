//! What the mock does with one request: directives appended to the model id
//! after `+` (or scripted per model), read into a [`Behaviour`], then rolled
//! into one [`Outcome`].
//!
//! | directive       | effect                                                   |
//! |-----------------|----------------------------------------------------------|
//! | `fail<code>`    | answer HTTP `<code>` with the protocol's error body       |
//! | `hang`          | never answer (until the client gives up)                  |
//! | `slow<ms>`      | wait `<ms>` before answering                              |
//! | `jitter<ms>`    | wait a further uniform `[0, ms)` (a latency distribution) |
//! | `nousage`       | omit usage                                                |
//! | `cached<n>`     | report `n` cached prompt tokens                           |
//! | `reasoning<n>`  | report `n` thinking tokens besides the answer's           |
//! | `cachewrite<n>` | report `n` prompt tokens written to the cache (Anthropic) |
//! | `badjson`       | a 200 whose body is not JSON                              |
//! | `truncate`      | a 200 whose JSON body breaks off mid-way                  |
//! | `reset`         | the connection drops before the body                      |
//! | `cutstream`     | streams stop after two deltas, without their terminator   |
//! | `slowstream<ms>`| pause `<ms>` between streamed deltas                      |
//! | `429x<n>`       | the first `n` requests get 429 with Retry-After           |
//! | `ra<ms>`        | the Retry-After sent with 429s (default 1000 ms)          |
//! | `flaky<pct>`    | `pct`% of requests fail: 500, 502, 503, reset or hang     |
//! | `until<n>`      | `flaky` applies to the first `n` requests only (recovery) |
//! | `ctx<n>`        | the context is `n` tokens: a longer prompt gets the       |
//! |                 | protocol's context-length 400                             |
//! | `reject<name>`  | a request that sets parameter `name` gets the protocol's  |
//! |                 | unsupported-parameter 400                                 |
//! | `toolcall`      | answer a user turn that offers tools with a call to one   |
//! | `toolcalls<n>`  | the same with `n` parallel calls                          |

use std::time::Duration;

use rand::Rng;

/// A request's scripted behaviour.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    pub fail: Option<u16>,
    pub hang: bool,
    pub delay: Duration,
    pub jitter: Duration,
    pub no_usage: bool,
    pub cached: u32,
    pub reasoning: u32,
    pub cache_write: u32,
    pub bad_json: bool,
    pub truncate: bool,
    pub reset: bool,
    pub cut_stream: bool,
    pub stream_delay: Option<Duration>,
    pub rate_limit_first: u64,
    pub retry_after: Duration,
    pub flaky_pct: u32,
    pub flaky_until: Option<u64>,
    /// Calls to make when tools are offered and the last turn is the user's.
    pub tool_calls: Option<u32>,
    /// The model's context, in (estimated) tokens.
    pub context: Option<u32>,
    /// Parameters the model refuses.
    pub rejects: Vec<String>,
}

impl Behaviour {
    /// Reads directives; unknown ones are ignored so model ids may contain `+`.
    pub fn parse<'a>(directives: impl Iterator<Item = &'a str>) -> Behaviour {
        let mut b = Behaviour {
            retry_after: Duration::from_secs(1),
            ..Behaviour::default()
        };
        let ms = |v: &str| v.parse().ok().map(Duration::from_millis);
        for d in directives {
            match d {
                "hang" => b.hang = true,
                "nousage" => b.no_usage = true,
                "badjson" => b.bad_json = true,
                "truncate" => b.truncate = true,
                "reset" => b.reset = true,
                "cutstream" => b.cut_stream = true,
                "toolcall" => b.tool_calls = Some(1),
                _ => {
                    if let Some(v) = d.strip_prefix("slowstream").and_then(ms) {
                        b.stream_delay = Some(v);
                    } else if let Some(v) = d.strip_prefix("slow").and_then(ms) {
                        b.delay += v;
                    } else if let Some(v) = d.strip_prefix("jitter").and_then(ms) {
                        b.jitter = v;
                    } else if let Some(v) = d.strip_prefix("fail").and_then(|v| v.parse().ok()) {
                        b.fail = Some(v);
                    } else if let Some(v) = d.strip_prefix("reasoning").and_then(|v| v.parse().ok())
                    {
                        b.reasoning = v;
                    } else if let Some(v) =
                        d.strip_prefix("cachewrite").and_then(|v| v.parse().ok())
                    {
                        b.cache_write = v;
                    } else if let Some(v) = d.strip_prefix("cached").and_then(|v| v.parse().ok()) {
                        b.cached = v;
                    } else if let Some(v) = d.strip_prefix("429x").and_then(|v| v.parse().ok()) {
                        b.rate_limit_first = v;
                    } else if let Some(v) = d.strip_prefix("ra").and_then(ms) {
                        b.retry_after = v;
                    } else if let Some(v) = d.strip_prefix("until").and_then(|v| v.parse().ok()) {
                        b.flaky_until = Some(v);
                    } else if let Some(v) = d.strip_prefix("ctx").and_then(|v| v.parse().ok()) {
                        b.context = Some(v);
                    } else if let Some(v) = d.strip_prefix("reject").filter(|v| !v.is_empty()) {
                        b.rejects.push(v.to_owned());
                    } else if let Some(v) = d.strip_prefix("toolcalls").and_then(|v| v.parse().ok())
                    {
                        b.tool_calls = Some(v);
                    } else if let Some(v) = d.strip_prefix("flaky").and_then(|v| v.parse().ok()) {
                        b.flaky_pct = v;
                    }
                }
            }
        }
        b
    }
}

/// What one request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Answer,
    Fail(u16),
    RateLimited(Duration),
    Hang,
    Reset,
    BadJson,
    Truncate,
}

/// Rolls the outcome of request number `seen` (1-based) to this model id;
/// `server_fail` is the server-wide random failure (flags), if it struck.
pub fn outcome(b: &Behaviour, seen: u64, server_fail: Option<u16>, rng: &mut impl Rng) -> Outcome {
    if b.hang {
        return Outcome::Hang;
    }
    if let Some(code) = b.fail {
        return Outcome::Fail(code);
    }
    if seen <= b.rate_limit_first {
        return Outcome::RateLimited(b.retry_after);
    }
    if let Some(code) = server_fail {
        return Outcome::Fail(code);
    }
    let flaky = b.flaky_pct > 0 && b.flaky_until.is_none_or(|n| seen <= n);
    if flaky && rng.random_range(0..100) < b.flaky_pct {
        return match rng.random_range(0..5) {
            0 => Outcome::Fail(500),
            1 => Outcome::Fail(502),
            2 => Outcome::Fail(503),
            3 => Outcome::Reset,
            _ => Outcome::Hang,
        };
    }
    if b.reset {
        return Outcome::Reset;
    }
    if b.bad_json {
        return Outcome::BadJson;
    }
    if b.truncate {
        return Outcome::Truncate;
    }
    Outcome::Answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn directives_parse_and_flaky_mixes_kinds() {
        let b =
            Behaviour::parse("slow20+jitter5+429x2+ra250+cached7+slowstream3+flaky50".split('+'));
        assert_eq!(b.delay, Duration::from_millis(20));
        assert_eq!(b.stream_delay, Some(Duration::from_millis(3)));
        assert_eq!((b.rate_limit_first, b.cached, b.flaky_pct), (2, 7, 50));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(
            outcome(&b, 2, None, &mut rng),
            Outcome::RateLimited(Duration::from_millis(250))
        );
        let outcomes: Vec<Outcome> = (0..400).map(|_| outcome(&b, 9, None, &mut rng)).collect();
        let ok = outcomes.iter().filter(|o| **o == Outcome::Answer).count();
        assert!((150..250).contains(&ok), "{ok}");
        for kind in [Outcome::Reset, Outcome::Hang, Outcome::Fail(502)] {
            assert!(outcomes.contains(&kind), "{kind:?}");
        }
    }
}
