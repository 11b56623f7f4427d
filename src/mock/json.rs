//! A JSON value that matches a JSON Schema, for the mock's structured
//! answers and tool arguments: the first choice of every `enum`, `anyOf`
//! and type list, every property, one array item, `$ref`s into `$defs`.
//! Enough for the schemas SDKs generate (Pydantic, zod); not a validator.

use serde_json::{Map, Value, json};

/// An instance of `schema` in which strings are `text` and integers `n`.
pub(super) fn instance(schema: &Value, text: &str, n: usize) -> Value {
    Gen {
        root: schema,
        text,
        n,
    }
    .of(schema, 0)
}

struct Gen<'a> {
    root: &'a Value,
    text: &'a str,
    n: usize,
}

/// Deeper than any real schema; stops a recursive `$ref` from looping.
const MAX_DEPTH: usize = 16;

impl Gen<'_> {
    fn of(&self, s: &Value, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let target = r
                .strip_prefix('#')
                .and_then(|p| self.root.pointer(p))
                .unwrap_or(&Value::Null);
            return self.of(target, depth + 1);
        }
        if let Some(v) = s.get("const") {
            return v.clone();
        }
        if let Some(v) = s.get("enum").and_then(|e| e.get(0)) {
            return v.clone();
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(first) = s
                .get(key)
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|o| o.get("type") != Some(&json!("null"))))
            {
                return self.of(first, depth + 1);
            }
        }
        let kind = match s.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ if s.get("properties").is_some() => "object",
            _ => "string",
        };
        match kind {
            "object" => {
                let props: Map<String, Value> = s
                    .get("properties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), self.of(v, depth + 1)))
                    .collect();
                if props.is_empty() {
                    json!({"answer": self.text})
                } else {
                    Value::Object(props)
                }
            }
            "array" => json!([self.of(s.get("items").unwrap_or(&json!({})), depth + 1)]),
            "integer" => json!(self.n),
            "number" => json!(self.n as f64 + 0.5),
            "boolean" => json!(true),
            "null" => Value::Null,
            _ => json!(self.text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pydantic_style_schema_gets_a_matching_instance() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "temp_c": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "unit": {"enum": ["C", "F"]},
                "where": {"$ref": "#/$defs/Place"},
                "note": {"anyOf": [{"type": "null"}, {"type": "number"}]}
            },
            "$defs": {"Place": {"type": "object", "properties": {"lat": {"type": "number"}}}}
        });
        assert_eq!(
            instance(&schema, "x", 2),
            json!({"city": "x", "temp_c": 2, "tags": ["x"], "unit": "C",
                   "where": {"lat": 2.5}, "note": 2.5})
        );
        assert_eq!(
            instance(&json!({"type": "object"}), "x", 0),
            json!({"answer": "x"})
        );
    }
}
