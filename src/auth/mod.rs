//! API keys: who may call, and as which tenant (`auth.mode = "keys"`).
//!
//! A key's secret is shown once, at creation, and stored only as its
//! SHA-256; every request's key is hashed and looked up in an in-memory
//! table, which the server re-reads from the store every
//! `auth.reload_interval_ms` (so keys made or revoked by the CLI take
//! effect without a restart) and at once after the admin API changes one.
//! The tenant of a request is its key's, never a header's; a key may be
//! limited to some models. See docs/governance.md.

pub mod cli;
mod limits;
mod shared;
mod spend;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, AuthMode, LimitsBackend, LimitsConfig};
use crate::error::Error;
use crate::store::{KeyRow, Store, StoreError};

/// The key a request was made with.
pub type Principal = Arc<KeyRow>;

/// Secrets start with this, so they are recognisable in a leak scan.
const PREFIX: &str = "sy-";

/// The key table, by hash, and the tenants' settings, by tenant.
pub struct Keys {
    store: Store,
    by_hash: ArcSwap<HashMap<String, Principal>>,
    tenants: ArcSwap<HashMap<String, Principal>>,
}

impl Keys {
    /// Reads every key from `store`.
    pub async fn load(store: Store) -> Result<Arc<Keys>, StoreError> {
        let keys = Arc::new(Keys {
            store,
            by_hash: ArcSwap::from_pointee(HashMap::new()),
            tenants: ArcSwap::from_pointee(HashMap::new()),
        });
        keys.reload().await?;
        Ok(keys)
    }

    /// Re-reads the table.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let table = self
            .store
            .keys()
            .await?
            .into_iter()
            .map(|k| (k.hash.clone(), Arc::new(k)))
            .collect();
        self.by_hash.store(Arc::new(table));
        let tenants = self
            .store
            .tenants()
            .await?
            .into_iter()
            .map(|t| (t.tenant.clone(), Arc::new(t)))
            .collect();
        self.tenants.store(Arc::new(tenants));
        Ok(())
    }

    /// `tenant`'s settings, if it has any.
    pub fn tenant(&self, tenant: &str) -> Option<Principal> {
        self.tenants.load().get(tenant).cloned()
    }

    /// Re-reads the table every `every` while the table is in use.
    pub fn follow(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(keys) = weak.upgrade() else { return };
                if let Err(e) = keys.reload().await {
                    tracing::warn!(error = %e, "could not re-read the API keys; keeping the last table");
                }
            }
        });
    }

    /// The key whose secret this is: missing, unknown and revoked keys are
    /// refused, each with its own message.
    pub fn authenticate(&self, secret: Option<&str>) -> Result<Principal, Error> {
        let secret = secret.map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| {
            Error::unauthenticated(
                "an API key is required: send it as `Authorization: Bearer <key>` or `x-api-key`",
            )
        })?;
        let key = self
            .by_hash
            .load()
            .get(&hash(secret))
            .cloned()
            .ok_or_else(|| Error::unauthenticated("the API key is not valid"))?;
        if key.revoked_at_ms.is_some() {
            return Err(Error::unauthenticated(format!(
                "the API key {} was revoked",
                key.id
            )));
        }
        Ok(key)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Where rate limits are counted: in this process, or in Redis for every
/// replica (`limits.backend`).
pub enum Limiter {
    Local(limits::Limits),
    Shared(Arc<shared::SharedLimits>),
}

impl Limiter {
    /// Admits a request of `tokens` estimated prompt tokens under `key`'s
    /// limits, charging both; a refusal charges neither.
    pub async fn admit(&self, key: &KeyRow, tokens: u32) -> Result<(), Error> {
        match self {
            Limiter::Local(l) => l.admit(key, tokens),
            Limiter::Shared(s) => s.admit(key, tokens).await,
        }
    }

    /// Settles a request's tokens with its real usage (`delta` = real −
    /// estimated).
    pub fn settle(&self, key: &KeyRow, delta: i64) {
        match self {
            Limiter::Local(l) => l.settle(key, delta),
            Limiter::Shared(s) => s.settle(key, delta),
        }
    }
}

/// What the transports ask: whether a call's key lets it in, and whether
/// a call holds the admin key.
pub struct Gate {
    pub keys: Arc<Keys>,
    /// Each key's requests and tokens per minute.
    pub limits: Limiter,
    /// Each key's spend today and this month, against its budgets.
    pub spend: spend::Spend,
    /// Every call needs a key (`auth.mode = "keys"`).
    pub required: bool,
    /// The admin key's hash; `None`: the admin API is off.
    admin: Option<String>,
}

impl Gate {
    /// Loads the key table (following it when keys are required) and reads
    /// the admin key from its environment variable.
    pub async fn start(
        config: &AuthConfig,
        limits: &LimitsConfig,
        store: Store,
    ) -> anyhow::Result<Arc<Gate>> {
        let store_for_spend = store.clone();
        let keys = Keys::load(store).await?;
        let required = config.mode == AuthMode::Keys;
        if required {
            keys.follow(config.reload_interval);
        }
        let admin = config
            .admin_key_env
            .as_deref()
            .and_then(|var| std::env::var(var).ok())
            .filter(|k| !k.trim().is_empty())
            .map(|k| hash(k.trim()));
        Ok(Arc::new(Gate {
            keys,
            limits: match limits.backend {
                LimitsBackend::Local => Limiter::Local(limits::Limits::new(limits.replicas)),
                LimitsBackend::Redis => {
                    Limiter::Shared(Arc::new(shared::SharedLimits::new(limits)?))
                }
            },
            // Without keys nothing is charged to a key: no scan of the
            // month's log at start.
            spend: if required {
                spend::Spend::load(&store_for_spend).await?
            } else {
                spend::Spend::default()
            },
            required,
            admin,
        }))
    }

    /// The call's key when keys are required (`None` when they are not).
    pub fn check(&self, secret: Option<&str>) -> Result<Option<Principal>, Error> {
        if !self.required {
            return Ok(None);
        }
        self.keys.authenticate(secret).map(Some)
    }

    /// Whether `secret` is the admin key.
    pub fn admin(&self, secret: Option<&str>) -> Result<(), Error> {
        let Some(admin) = &self.admin else {
            return Err(Error::permission(
                "the admin API is off: set the variable named by auth.admin_key_env",
            ));
        };
        match secret.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) if hash(s) == *admin => Ok(()),
            Some(_) => Err(Error::unauthenticated("the admin key is not valid")),
            None => Err(Error::unauthenticated(
                "the admin API needs the admin key: `Authorization: Bearer <key>`",
            )),
        }
    }
}

impl Gate {
    /// Reading what the router did (the console's pages): the admin key,
    /// except on a server that is open anyway (no API keys and no admin key,
    /// which `check_open` keeps to loopback unless told otherwise). Changes
    /// always need the admin key ([`Gate::admin`]).
    pub fn admin_read(&self, secret: Option<&str>) -> Result<(), Error> {
        if self.admin.is_none() && !self.required {
            return Ok(());
        }
        self.admin(secret)
    }
}

/// Serving without keys on an address others can reach is refused unless
/// `auth.allow_open` says it is meant.
pub fn check_open(config: &AuthConfig, addrs: &[std::net::SocketAddr]) -> anyhow::Result<()> {
    if config.mode == AuthMode::Keys || config.allow_open {
        return Ok(());
    }
    if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        anyhow::bail!(
            "refusing to serve on {a} without API keys: anyone who reaches it could spend every \
             provider key; set auth.mode = \"keys\" (see `switchyard keys create`), or \
             auth.allow_open = true if the network in front does the checking"
        );
    }
    Ok(())
}

/// Tenant names are at most this long.
const MAX_TENANT_BYTES: usize = 256;

/// A tenant name, as a request or a key gives it.
pub fn check_tenant(t: &str) -> Result<(), Error> {
    if t.len() > MAX_TENANT_BYTES {
        return Err(Error::invalid(
            "tenant",
            format!("longer than {MAX_TENANT_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// The hex SHA-256 of a secret, as stored.
pub fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new key's public id and secret.
fn generate() -> (String, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 24];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    (
        format!("key_{}", hex(&id)),
        format!("{PREFIX}{}", hex(&secret)),
    )
}

/// What a new key carries; everything but the tenant is optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub tenant: Option<String>,
    pub name: Option<String>,
    pub tier: Option<String>,
    pub models: Option<Vec<String>>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub budget_day_usd: Option<f64>,
    pub budget_month_usd: Option<f64>,
    /// While the shared rate limiter is unreachable: "open" or "closed".
    pub on_unreachable: Option<String>,
}

impl KeySettings {
    /// Applies the settings given over `k` (the tenant is fixed at creation).
    fn apply(self, k: &mut KeyRow) -> Result<(), Error> {
        for (field, v) in [
            ("budget_day_usd", self.budget_day_usd),
            ("budget_month_usd", self.budget_month_usd),
        ] {
            if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(Error::invalid(field, "must be a finite number >= 0"));
            }
        }
        if let Some(v) = self
            .on_unreachable
            .as_deref()
            .filter(|v| !matches!(*v, "open" | "closed"))
        {
            return Err(Error::invalid(
                "on_unreachable",
                format!("{v:?}: use \"open\" or \"closed\""),
            ));
        }
        if self.rpm == Some(0) || self.tpm == Some(0) {
            return Err(Error::invalid("rpm", "limits must be greater than 0"));
        }
        if let Some(v) = self.name {
            k.name = v;
        }
        if let Some(v) = self.tier {
            k.tier = v;
        }
        if let Some(v) = self.models {
            k.models = v;
        }
        k.rpm = self.rpm.or(k.rpm);
        k.tpm = self.tpm.or(k.tpm);
        k.budget_day_usd = self.budget_day_usd.or(k.budget_day_usd);
        k.budget_month_usd = self.budget_month_usd.or(k.budget_month_usd);
        k.on_unreachable = self.on_unreachable.or(k.on_unreachable.take());
        Ok(())
    }
}

/// Creates a key; returns it and its secret, which is not kept.
pub async fn create(store: &Store, s: KeySettings) -> Result<(KeyRow, String), Error> {
    let tenant = s
        .tenant
        .clone()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Error::invalid("tenant", "a key belongs to a tenant: name it"))?;
    check_tenant(&tenant)?;
    let (id, secret) = generate();
    let now = crate::clock::now_ms();
    let mut key = KeyRow::new(id, hash(&secret), tenant, now);
    s.apply(&mut key)?;
    store.insert_key(&key).await?;
    Ok((key, secret))
}

/// Sets a tenant's settings (those given; the rest stay), creating them.
pub async fn set_tenant(store: &Store, tenant: &str, mut s: KeySettings) -> Result<KeyRow, Error> {
    check_tenant(tenant)?;
    if tenant.trim().is_empty() {
        return Err(Error::invalid("tenant", "name the tenant"));
    }
    if s.tenant.take().is_some_and(|t| t != tenant) || s.name.is_some() {
        return Err(Error::invalid(
            "tenant",
            "a tenant's settings are its tier, models, rpm, tpm and budgets",
        ));
    }
    let now = crate::clock::now_ms();
    let mut row = store
        .tenants()
        .await?
        .into_iter()
        .find(|t| t.tenant == tenant)
        .unwrap_or_else(|| {
            KeyRow::new(KeyRow::tenant_id(tenant), String::new(), tenant.into(), now)
        });
    s.apply(&mut row)?;
    row.updated_at_ms = now;
    store.upsert_tenant(&row).await?;
    Ok(row)
}

/// Changes a key's settings, or revokes it.
pub async fn update(
    store: &Store,
    id: &str,
    s: KeySettings,
    revoke: bool,
) -> Result<KeyRow, Error> {
    let mut key = store
        .keys()
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(|| Error::not_found("key", format!("no API key {id:?}")))?;
    if s.tenant.as_ref().is_some_and(|t| *t != key.tenant) {
        return Err(Error::invalid(
            "tenant",
            "a key's tenant is fixed: create a key for the other tenant",
        ));
    }
    s.apply(&mut key)?;
    key.updated_at_ms = crate::clock::now_ms();
    if revoke && key.revoked_at_ms.is_none() {
        key.revoked_at_ms = Some(key.updated_at_ms);
    }
    store.update_key(&key).await?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_hashed() {
        let (id, secret) = generate();
        let (id2, secret2) = generate();
        assert!(id.starts_with("key_") && secret.starts_with(PREFIX));
        assert_ne!((id, &secret), (id2, &secret2));
        assert_eq!(hash(&secret).len(), 64);
        assert_ne!(hash(&secret), hash(&secret2));
    }
}
