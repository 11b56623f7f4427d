//! The layers a config is made of, lowest first: `config/default.toml` (the
//! only place defaults are written), the user's file deep-merged over it, and
//! `SWITCHYARD__SECTION__KEY` environment variables over both, as containers
//! expect. The merged table is then deserialised strictly into
//! [`super::raw::RawConfig`].

use toml::{Table, Value};

use super::{ConfigError, invalid};

/// The prefix of environment variables that set config keys; `__` separates
/// the section from the key (`SWITCHYARD__SERVER__DATABASE`).
pub(super) const ENV_PREFIX: &str = "SWITCHYARD__";

/// Merges `over` into `base`: tables key by key, everything else (values,
/// arrays, arrays of tables) replaced whole. A file with its own `[[models]]`
/// brings its own `[[providers]]`: the built-in ones are dropped with the
/// built-in catalog.
pub(super) fn merge(base: &mut Table, over: Table) {
    if over.contains_key("models") {
        base.remove("providers");
    }
    deep_merge(base, over);
}

fn deep_merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => deep_merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Applies `SWITCHYARD__*` variables from `vars` to `table`. A value takes
/// the type the key already has (so `"8000"` stays a string where a string
/// is expected); a key the defaults do not have is read as a TOML value, or
/// as a string when it is not one. Names are case-insensitive.
pub(super) fn apply_env(
    table: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        if path.iter().any(String::is_empty) || path.len() < 2 {
            return Err(invalid(
                &name,
                "expected SWITCHYARD__SECTION__KEY (sections and keys joined by __)",
            ));
        }
        let (key, sections) = path.split_last().expect("at least two segments");
        let mut at = &mut *table;
        for s in sections {
            at = match at.get_mut(s) {
                Some(Value::Table(t)) => t,
                _ => return Err(invalid(&name, format!("there is no section [{s}]"))),
            };
        }
        let value = typed(at.get(key), &raw).map_err(|why| invalid(&name, why))?;
        at.insert(key.clone(), value);
    }
    Ok(())
}

/// `raw` as a value of the same type as `like`.
fn typed(like: Option<&Value>, raw: &str) -> Result<Value, String> {
    let parse = |what: &str| format!("{raw:?} is not {what}");
    Ok(match like {
        Some(Value::String(_)) => Value::String(raw.to_owned()),
        Some(Value::Integer(_)) => {
            Value::Integer(raw.trim().parse().map_err(|_| parse("an integer"))?)
        }
        Some(Value::Float(_)) => Value::Float(raw.trim().parse().map_err(|_| parse("a number"))?),
        Some(Value::Boolean(_)) => {
            Value::Boolean(raw.trim().parse().map_err(|_| parse("true or false"))?)
        }
        _ => match toml::from_str::<Table>(&format!("v = {raw}")) {
            Ok(mut t) => t.remove("v").expect("just parsed"),
            Err(_) => Value::String(raw.to_owned()),
        },
    })
}

/// The 1-based line of the key at `path` (`["server", "bogus"]`,
/// `["models", "0", "fallback"]`) in the TOML `text`, when it is there.
pub(super) fn line_of(text: &str, path: &[String]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut table: &DeTable = root.get_ref();
    let mut start = None;
    let mut segments = path.iter().peekable();
    while let Some(seg) = segments.next() {
        let (key, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == seg)?;
        start = Some(key.span().start);
        let mut value = value.get_ref();
        // An array is indexed by the next segment.
        if let DeValue::Array(items) = value {
            let Some(i) = segments.next_if(|s| s.parse::<usize>().is_ok()) else {
                break;
            };
            let item = items.get(i.parse::<usize>().ok()?)?;
            start = Some(item.span().start);
            value = item.get_ref();
        }
        match value {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    start.map(|at| text[..at.min(text.len())].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn files_merge_key_by_key_and_a_catalog_brings_its_providers() {
        let mut base = table("[server]\na = 1\nb = 2\n[[providers]]\nname = \"x\"\n");
        merge(&mut base, table("[server]\nb = 3\n"));
        assert_eq!(base["server"]["a"].as_integer(), Some(1));
        assert_eq!(base["server"]["b"].as_integer(), Some(3));
        assert!(base.contains_key("providers"));
        merge(&mut base, table("[[models]]\nname = \"m\"\n"));
        assert!(!base.contains_key("providers"));
    }

    #[test]
    fn environment_values_take_the_type_of_their_key() {
        let mut t = table("[server]\nname = \"a\"\nport = 1\nratio = 0.5\non = false\n");
        let vars = [
            ("SWITCHYARD__SERVER__NAME", "8000"),
            ("SWITCHYARD__SERVER__PORT", "9"),
            ("SWITCHYARD__SERVER__RATIO", "2"),
            ("SWITCHYARD__SERVER__ON", "true"),
            ("SWITCHYARD__SERVER__NEW", "[1, 2]"),
            ("OTHER", "ignored"),
        ];
        apply_env(&mut t, vars.map(|(k, v)| (k.into(), v.into()))).unwrap();
        assert_eq!(t["server"]["name"].as_str(), Some("8000"));
        assert_eq!(t["server"]["port"].as_integer(), Some(9));
        assert_eq!(t["server"]["ratio"].as_float(), Some(2.0));
        assert_eq!(t["server"]["on"].as_bool(), Some(true));
        assert_eq!(t["server"]["new"].as_array().map(Vec::len), Some(2));
        for (k, v) in [
            ("SWITCHYARD__SERVER__PORT", "many"),
            ("SWITCHYARD__NOPE__X", "1"),
            ("SWITCHYARD__SERVER", "1"),
        ] {
            let err = apply_env(&mut t, [(k.into(), v.into())]).unwrap_err();
            assert!(err.to_string().contains(k), "{err}");
        }
    }

    #[test]
    fn lines_are_found_through_tables_and_arrays() {
        let text = "[server]\na = 1\n\n[[models]]\nname = \"m\"\n[[models]]\nname = \"n\"\nfallback = []\n";
        let p = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(line_of(text, &p(&["server", "a"])), Some(2));
        assert_eq!(line_of(text, &p(&["models", "1", "fallback"])), Some(8));
        assert_eq!(line_of(text, &p(&["server", "missing"])), None);
    }
}
