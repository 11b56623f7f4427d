//! `[[models.deployments]]`: the other places a model is served (another
//! host, key or region), validated; the model's own provider is its first.

use std::collections::HashSet;

use super::raw::RawDeployment;
use super::{ConfigError, DeploymentConfig, ProviderConfig, invalid};

/// The model's further deployments, beyond `primary` (its own provider's
/// name). Every one names a known provider that speaks the primary's protocol
/// (the model's capabilities are read per protocol), the names differ, and
/// the prices given are finite and non-negative; what is left out stays the
/// model's, resolved when the catalog is built.
pub(super) fn validate(
    field: &dyn Fn(&str) -> String,
    primary: &str,
    more: Vec<RawDeployment>,
    providers: &[ProviderConfig],
) -> Result<Vec<DeploymentConfig>, ConfigError> {
    let kind_of = |name: &str| providers.iter().find(|p| p.name == name).map(|p| p.kind);
    let kind = kind_of(primary);
    let mut names = HashSet::from([primary.to_owned()]);
    let mut out = Vec::with_capacity(more.len());
    for (j, d) in more.into_iter().enumerate() {
        let at = |k: &str| field(&format!("deployments[{j}].{k}"));
        match kind_of(&d.provider) {
            None => {
                return Err(invalid(
                    at("provider"),
                    format!("no provider named {:?}", d.provider),
                ));
            }
            Some(k) if Some(k) != kind => {
                return Err(invalid(
                    at("provider"),
                    format!(
                        "{:?} speaks {}; a model's deployments share its provider's protocol",
                        d.provider,
                        k.name()
                    ),
                ));
            }
            Some(_) => {}
        }
        let name = d.name.unwrap_or_else(|| d.provider.clone());
        if name.is_empty() || !names.insert(name.clone()) {
            return Err(invalid(
                at("name"),
                format!("{name:?} is empty or repeated: name deployments on one provider apart"),
            ));
        }
        for (k, v) in [
            ("input_usd_per_mtok", d.input_usd_per_mtok),
            ("output_usd_per_mtok", d.output_usd_per_mtok),
            ("cache_read_usd_per_mtok", d.cache_read_usd_per_mtok),
            ("cache_write_usd_per_mtok", d.cache_write_usd_per_mtok),
        ] {
            if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(invalid(at(k), "must be a finite number >= 0"));
            }
        }
        out.push(DeploymentConfig {
            name,
            provider: d.provider,
            upstream: d.upstream,
            input_usd_per_mtok: d.input_usd_per_mtok,
            output_usd_per_mtok: d.output_usd_per_mtok,
            cache_read_usd_per_mtok: d.cache_read_usd_per_mtok,
            cache_write_usd_per_mtok: d.cache_write_usd_per_mtok,
        });
    }
    Ok(out)
}
