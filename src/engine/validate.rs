//! Request validation: everything a client can get wrong is caught here, with
//! the field named, before any work is done.

use std::collections::BTreeMap;

use crate::catalog::Catalog;
use crate::dispatch::{ChatMessage, Part, ResponseFormat, Sampling, ToolChoice, Tools, data_url};
use crate::error::Error;

const ROLES: [&str; 5] = ["system", "user", "assistant", "tool", "developer"];
const MAX_SOURCE_BYTES: usize = 128;
const MAX_METADATA_ENTRIES: usize = 64;
const MAX_METADATA_BYTES: usize = 4096;
/// OpenAI's limits on stop sequences (count) and a generous length bound.
const MAX_STOP_SEQUENCES: usize = 4;
const MAX_STOP_BYTES: usize = 256;

/// Validates messages: non-empty, known roles, some text, within the limit.
pub fn messages(msgs: &[ChatMessage], max_bytes: usize) -> Result<(), Error> {
    if msgs.is_empty() {
        return Err(Error::invalid("messages", "must not be empty"));
    }
    let mut total = 0usize;
    for (i, m) in msgs.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(Error::invalid(
                format!("messages[{i}].role"),
                format!("{:?} is not one of {}", m.role, ROLES.join(", ")),
            ));
        }
        total = total.saturating_add(m.content.len());
        tool_traffic(i, m, &msgs[..i])?;
        images(i, m)?;
    }
    if total > max_bytes {
        return Err(Error::invalid(
            "messages",
            format!("{total} bytes of content exceed the limit of {max_bytes}"),
        ));
    }
    let has_image = |m: &ChatMessage| m.parts.iter().any(|p| matches!(p, Part::Image { .. }));
    if msgs
        .iter()
        .all(|m| m.content.trim().is_empty() && !has_image(m))
    {
        return Err(Error::invalid(
            "messages",
            "every message's content is empty",
        ));
    }
    Ok(())
}

/// A message's part in tool calling: only assistants call, only `tool`
/// messages answer, each answer names an earlier call (Gemini answers by the
/// call's function name), and arguments are JSON (Anthropic and Gemini take
/// them as objects).
fn tool_traffic(i: usize, m: &ChatMessage, earlier: &[ChatMessage]) -> Result<(), Error> {
    if !m.tool_calls.is_empty() && m.role != "assistant" {
        return Err(Error::invalid(
            format!("messages[{i}].tool_calls"),
            "only an assistant message may carry tool calls",
        ));
    }
    for (j, c) in m.tool_calls.iter().enumerate() {
        let field = |f: &str| format!("messages[{i}].tool_calls[{j}].{f}");
        if c.id.is_empty() {
            return Err(Error::invalid(field("id"), "must not be empty"));
        }
        tool_name(&field("function.name"), &c.name)?;
        if serde_json::from_str::<serde_json::Value>(&c.arguments).is_err() {
            return Err(Error::invalid(
                field("function.arguments"),
                "must be JSON text",
            ));
        }
    }
    match (&m.tool_call_id, m.role == "tool") {
        (None, true) => Err(Error::invalid(
            format!("messages[{i}].tool_call_id"),
            "a tool message must name the call it answers",
        )),
        (Some(_), false) => Err(Error::invalid(
            format!("messages[{i}].tool_call_id"),
            "only a tool message answers a call",
        )),
        (Some(id), true)
            if !earlier
                .iter()
                .flat_map(|e| &e.tool_calls)
                .any(|c| &c.id == id) =>
        {
            Err(Error::invalid(
                format!("messages[{i}].tool_call_id"),
                format!("{id:?} answers no earlier assistant tool call"),
            ))
        }
        _ => Ok(()),
    }
}

/// Images come in user turns (as OpenAI takes them), by `http(s)` URL or
/// as a base64 `data:` URL of an image type.
fn images(i: usize, m: &ChatMessage) -> Result<(), Error> {
    for (j, p) in m.parts.iter().enumerate() {
        let Part::Image { url, detail } = p else {
            continue;
        };
        let field = |f: &str| format!("messages[{i}].content[{j}].image_url.{f}");
        if m.role != "user" {
            return Err(Error::invalid(
                format!("messages[{i}].content[{j}]"),
                "only a user message may carry images",
            ));
        }
        let ok = match data_url(url) {
            Some((mime, data)) => mime.starts_with("image/") && !data.is_empty(),
            None => url.starts_with("https://") || url.starts_with("http://"),
        };
        if !ok {
            return Err(Error::invalid(
                field("url"),
                "must be an http(s) URL or a data:image/...;base64, URL",
            ));
        }
        if detail
            .as_deref()
            .is_some_and(|d| !matches!(d, "auto" | "low" | "high"))
        {
            return Err(Error::invalid(
                field("detail"),
                "must be one of auto, low, high",
            ));
        }
    }
    Ok(())
}

/// OpenAI's and Anthropic's rule for function names (Gemini's is looser).
fn tool_name(field: &str, name: &str) -> Result<(), Error> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{name:?} is not 1 to 64 letters, digits, '_' or '-'"),
        ))
    }
}

/// Validates a JSON Schema response format: a name as OpenAI requires one,
/// a schema that is an object.
pub fn response_format(f: Option<&ResponseFormat>) -> Result<(), Error> {
    if let Some(ResponseFormat::JsonSchema { name, schema, .. }) = f {
        tool_name("response_format.json_schema.name", name)?;
        if schema.as_ref().is_some_and(|s| !s.is_object()) {
            return Err(Error::invalid(
                "response_format.json_schema.schema",
                "must be a JSON Schema object",
            ));
        }
    }
    Ok(())
}

/// Validates tool definitions and the choice among them.
pub fn tools(t: &Tools) -> Result<(), Error> {
    for (i, d) in t.defs.iter().enumerate() {
        let field = |f: &str| format!("tools[{i}].function.{f}");
        tool_name(&field("name"), &d.name)?;
        if d.name.starts_with("switchyard_") {
            return Err(Error::invalid(
                field("name"),
                "names starting with \"switchyard_\" are the router's own",
            ));
        }
        if t.defs[..i].iter().any(|e| e.name == d.name) {
            return Err(Error::invalid(
                field("name"),
                format!("{:?} is defined twice", d.name),
            ));
        }
        if d.parameters.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(Error::invalid(
                field("parameters"),
                "must be a JSON Schema object",
            ));
        }
    }
    match &t.choice {
        Some(ToolChoice::None) | None => Ok(()),
        Some(_) if t.defs.is_empty() => Err(Error::invalid(
            "tool_choice",
            "is only allowed when tools are given",
        )),
        Some(ToolChoice::Function(name)) if !t.defs.iter().any(|d| &d.name == name) => {
            Err(Error::invalid(
                "tool_choice",
                format!("names {name:?}, which is not among the tools"),
            ))
        }
        Some(_) => Ok(()),
    }
}

/// Validates stop sequences: at most 4, each non-empty and bounded, so no
/// provider rejects them (or, for an empty one, stops at once).
pub fn stop(seqs: &[String]) -> Result<(), Error> {
    if seqs.len() > MAX_STOP_SEQUENCES {
        return Err(Error::invalid(
            "stop",
            format!(
                "{} sequences given; at most {MAX_STOP_SEQUENCES} are allowed",
                seqs.len()
            ),
        ));
    }
    for (i, s) in seqs.iter().enumerate() {
        if s.is_empty() {
            return Err(Error::invalid(format!("stop[{i}]"), "must not be empty"));
        }
        if s.len() > MAX_STOP_BYTES {
            return Err(Error::invalid(
                format!("stop[{i}]"),
                format!("longer than {MAX_STOP_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

/// A tenant name (the rule is governance's, which names tenants in keys).
pub fn tenant(t: &str) -> Result<(), Error> {
    crate::auth::check_tenant(t)
}

/// Resolves an allow-list of names to catalog indices.
pub fn candidates(names: &[String], catalog: &Catalog) -> Result<Option<Vec<usize>>, Error> {
    if names.is_empty() {
        return Ok(None);
    }
    names
        .iter()
        .map(|n| {
            catalog.model_index(n).ok_or_else(|| {
                Error::not_found("candidates", format!("no model named {n:?} in the catalog"))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

pub fn model(name: &str, catalog: &Catalog) -> Result<usize, Error> {
    catalog
        .model_index(name)
        .ok_or_else(|| Error::not_found("model", format!("no model named {name:?} in the catalog")))
}

/// A finite, non-negative number.
pub fn non_negative(field: &str, v: Option<f64>) -> Result<Option<f64>, Error> {
    match v {
        Some(x) if !x.is_finite() || x < 0.0 => Err(Error::invalid(
            field,
            format!("{x} is not a finite number >= 0"),
        )),
        other => Ok(other),
    }
}

pub fn positive_u32(field: &str, v: Option<u32>) -> Result<Option<u32>, Error> {
    match v {
        Some(0) => Err(Error::invalid(field, "must be greater than 0")),
        other => Ok(other),
    }
}

pub fn temperature(v: Option<f64>) -> Result<Option<f64>, Error> {
    within("temperature", v, 0.0, 2.0).map(|()| v)
}

/// `v`, if set, is in `[lo, hi]`.
fn within(field: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<(), Error> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => {
            Err(Error::invalid(field, format!("{x} is not in [{lo}, {hi}]")))
        }
        _ => Ok(()),
    }
}

/// OpenAI's ranges, which every protocol we forward to shares.
pub fn sampling(s: &Sampling) -> Result<(), Error> {
    within("top_p", s.top_p, 0.0, 1.0)?;
    within("frequency_penalty", s.frequency_penalty, -2.0, 2.0)?;
    within("presence_penalty", s.presence_penalty, -2.0, 2.0)?;
    if let Some(e) = &s.reasoning_effort
        && !REASONING_EFFORTS.contains(&e.as_str())
    {
        return Err(Error::invalid(
            "reasoning_effort",
            format!("{e:?} is not one of {REASONING_EFFORTS:?}"),
        ));
    }
    positive_u32("top_k", s.top_k)?;
    positive_u32("reasoning_budget_tokens", s.reasoning_budget)?;
    Ok(())
}

/// OpenAI's values of `reasoning_effort`.
const REASONING_EFFORTS: [&str; 4] = ["minimal", "low", "medium", "high"];

pub fn metadata(m: &BTreeMap<String, String>) -> Result<(), Error> {
    let bytes: usize = m.iter().map(|(k, v)| k.len() + v.len()).sum();
    if m.len() > MAX_METADATA_ENTRIES || bytes > MAX_METADATA_BYTES {
        return Err(Error::invalid(
            "metadata",
            format!("at most {MAX_METADATA_ENTRIES} entries and {MAX_METADATA_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A decision id must be a UUID; returns it in canonical form.
pub fn decision_id(id: &str) -> Result<String, Error> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            Error::invalid(
                "decision_id",
                format!("{id:?} is not a decision id (a UUID)"),
            )
        })
}

pub fn reward(r: f64) -> Result<f64, Error> {
    if !(0.0..=1.0).contains(&r) {
        return Err(Error::invalid("reward", format!("{r} is not in [0, 1]")));
    }
    Ok(r)
}

/// Empty means "default"; otherwise a short label.
pub fn source(s: &str) -> Result<String, Error> {
    match s {
        "" => Ok("default".into()),
        s if s.len() > MAX_SOURCE_BYTES => Err(Error::invalid(
            "source",
            format!("longer than {MAX_SOURCE_BYTES} bytes"),
        )),
        s => Ok(s.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage::text(role, content)
    }

    #[test]
    fn messages_are_checked_with_field_names() {
        assert!(messages(&[msg("user", "hi")], 100).is_ok());
        let e = messages(&[], 100).unwrap_err().to_string();
        assert!(e.starts_with("messages:"), "{e}");
        let e = messages(&[msg("user", "hi"), msg("robot", "x")], 100)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("messages[1].role:"), "{e}");
        let e = messages(&[msg("user", "  ")], 100).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = messages(&[msg("user", &"x".repeat(101))], 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exceed"), "{e}");
    }

    #[test]
    fn rewards_and_ids() {
        assert!(reward(f64::NAN).is_err());
        assert!(reward(1.5).is_err());
        assert!(reward(-0.1).is_err());
        assert_eq!(reward(0.0).unwrap(), 0.0);
        assert!(decision_id("nope").is_err());
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(decision_id(&id.to_uppercase()).unwrap(), id);
        assert_eq!(source("").unwrap(), "default");
        assert!(non_negative("cost_weight", Some(f64::INFINITY)).is_err());
        assert!(temperature(Some(f64::NAN)).is_err());
    }

    #[test]
    fn stop_sequences_are_bounded_and_name_the_bad_one() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(stop(&[]).is_ok());
        assert!(stop(&v(&["a", "b", "c", "d"])).is_ok());
        let field = |r: Result<(), Error>| match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(stop(&v(&["a"; 5]))), "stop");
        assert_eq!(field(stop(&v(&["a", ""]))), "stop[1]");
        assert_eq!(field(stop(&["x".repeat(257)])), "stop[0]");
    }
}
