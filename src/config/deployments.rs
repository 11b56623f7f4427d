//! `[[models.deployments]]`: the other places a model is served (another
//! host, key or region), validated into the model's deployment list with its
//! own provider first.

use std::collections::HashSet;

use super::raw::RawDeployment;
use super::{ConfigError, DeploymentConfig, ProviderConfig, invalid};

/// The model's deployments: `primary` (its own provider) and then `more`.
/// Every one names a known provider that speaks the primary's protocol (the
/// model's capabilities are read per protocol), and their names differ.
pub(super) fn validate(
    field: &dyn Fn(&str) -> String,
    primary: DeploymentConfig,
    more: Vec<RawDeployment>,
    providers: &[ProviderConfig],
) -> Result<Vec<DeploymentConfig>, ConfigError> {
    let kind_of = |name: &str| providers.iter().find(|p| p.name == name).map(|p| p.kind);
    let kind = kind_of(&primary.provider);
    let mut names = HashSet::from([primary.name.clone()]);
    let mut out = vec![primary];
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
        let first = &out[0];
        let input = d.input_usd_per_mtok.unwrap_or(first.input_usd_per_mtok);
        let deployment = DeploymentConfig {
            name,
            upstream: d.upstream.unwrap_or_else(|| first.upstream.clone()),
            provider: d.provider,
            input_usd_per_mtok: input,
            output_usd_per_mtok: d.output_usd_per_mtok.unwrap_or(first.output_usd_per_mtok),
            cache_read_usd_per_mtok: d.cache_read_usd_per_mtok.unwrap_or(input),
            cache_write_usd_per_mtok: d.cache_write_usd_per_mtok.unwrap_or(input),
        };
        for (k, v) in [
            ("input_usd_per_mtok", deployment.input_usd_per_mtok),
            ("output_usd_per_mtok", deployment.output_usd_per_mtok),
            (
                "cache_read_usd_per_mtok",
                deployment.cache_read_usd_per_mtok,
            ),
            (
                "cache_write_usd_per_mtok",
                deployment.cache_write_usd_per_mtok,
            ),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(invalid(at(k), "must be a finite number >= 0"));
            }
        }
        out.push(deployment);
    }
    Ok(out)
}
