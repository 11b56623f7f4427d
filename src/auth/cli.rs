//! `switchyard keys create|list|revoke|update`: API keys in a decision log's
//! database, beside a running server (it picks changes up within
//! `auth.reload_interval_ms`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::KeySettings;
use crate::store::{KeyRow, Store};

/// How long a key command waits for a busy server's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key for a tenant and print its secret (shown this once only).
    Create {
        #[arg(long, default_value = "switchyard.db")]
        database: PathBuf,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List every key (never their secrets).
    List {
        #[arg(long, default_value = "switchyard.db")]
        database: PathBuf,
    },
    /// Revoke a key: its requests get 401 from then on.
    Revoke {
        #[arg(long, default_value = "switchyard.db")]
        database: PathBuf,
        id: String,
    },
    /// Change a key's settings (those given; the rest stay).
    Update {
        #[arg(long, default_value = "switchyard.db")]
        database: PathBuf,
        id: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

/// `switchyard tenants set|list`: settings every key of a tenant is held to.
#[derive(clap::Subcommand)]
pub enum TenantsCommand {
    /// Set a tenant's tier, models, limits and budgets (those given; the rest stay).
    Set {
        #[arg(long, default_value = "switchyard.db")]
        database: PathBuf,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List every tenant's settings.
    List {
        #[arg(long, default_value = "switchyard.db")]
        database: PathBuf,
    },
}

impl TenantsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            TenantsCommand::Set {
                database,
                tenant,
                settings,
            } => {
                let store = open(&database).await?;
                let t = super::set_tenant(&store, &tenant, settings.settings(None)).await?;
                store.close().await;
                print!("{}", table(&[t]));
            }
            TenantsCommand::List { database } => {
                let store = open(&database).await?;
                let tenants = store.tenants().await?;
                store.close().await;
                print!("{}", table(&tenants));
            }
        }
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct SettingsArgs {
    /// A label for people.
    #[arg(long)]
    name: Option<String>,
    /// A tier label (free, pro, ...).
    #[arg(long)]
    tier: Option<String>,
    /// Allowed models, comma-separated (default: every model).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u32>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<u32>,
    /// USD per day.
    #[arg(long)]
    budget_day_usd: Option<f64>,
    /// USD per month.
    #[arg(long)]
    budget_month_usd: Option<f64>,
    /// While the shared rate limiter (Redis) is unreachable: open or closed.
    #[arg(long)]
    on_unreachable: Option<String>,
}

impl SettingsArgs {
    fn settings(self, tenant: Option<String>) -> KeySettings {
        KeySettings {
            tenant,
            name: self.name,
            tier: self.tier,
            models: self.models,
            rpm: self.rpm,
            tpm: self.tpm,
            budget_day_usd: self.budget_day_usd,
            budget_month_usd: self.budget_month_usd,
            on_unreachable: self.on_unreachable,
        }
    }
}

/// Opens the log for a command-line tool (applying migrations).
pub async fn open(database: &Path) -> anyhow::Result<Store> {
    let cfg = crate::config::Config::embedded().store;
    let (store, _writer) = Store::open_with(database, &cfg, BUSY_TIMEOUT)
        .await
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", database.display()))?;
    Ok(store)
}

impl KeysCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            KeysCommand::Create {
                database,
                tenant,
                settings,
            } => {
                let store = open(&database).await?;
                let (key, secret) = super::create(&store, settings.settings(Some(tenant))).await?;
                store.close().await;
                println!("{secret}");
                eprintln!(
                    "created {} for tenant {:?}: the secret above is shown only now",
                    key.id, key.tenant
                );
            }
            KeysCommand::List { database } => {
                let store = open(&database).await?;
                let keys = store.keys().await?;
                store.close().await;
                print!("{}", table(&keys));
            }
            KeysCommand::Revoke { database, id } => {
                let store = open(&database).await?;
                let key = super::update(&store, &id, KeySettings::default(), true).await?;
                store.close().await;
                println!("revoked {}", key.id);
            }
            KeysCommand::Update {
                database,
                id,
                settings,
            } => {
                let store = open(&database).await?;
                let key = super::update(&store, &id, settings.settings(None), false).await?;
                store.close().await;
                print!("{}", table(&[key]));
            }
        }
        Ok(())
    }
}

/// One line per key (or tenant's settings).
fn table(keys: &[KeyRow]) -> String {
    let mut out = format!(
        "{:<22} {:<16} {:<12} {:<8} {:>6} {:>8} {:>10} {:>10} {:<8} models\n",
        "id", "tenant", "name", "tier", "rpm", "tpm", "usd/day", "usd/month", "state"
    );
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for k in keys {
        out.push_str(&format!(
            "{:<22} {:<16} {:<12} {:<8} {:>6} {:>8} {:>10} {:>10} {:<8} {}\n",
            k.id,
            k.tenant,
            k.name,
            k.tier,
            opt(k.rpm.map(|v| v.to_string())),
            opt(k.tpm.map(|v| v.to_string())),
            opt(k.budget_day_usd.map(|v| v.to_string())),
            opt(k.budget_month_usd.map(|v| v.to_string())),
            if k.revoked_at_ms.is_some() {
                "revoked"
            } else {
                "active"
            },
            if k.models.is_empty() {
                "all".into()
            } else {
                k.models.join(",")
            },
        ));
    }
    out
}

/// `switchyard spend`: spend per UTC day, tenant, key and model from the
/// log, with totals per tenant and per key.
#[derive(clap::Args)]
pub struct SpendArgs {
    #[arg(long, default_value = "switchyard.db")]
    database: PathBuf,
    /// From this time: Unix ms, YYYY-MM-DD[THH:MM:SSZ], or an age (7d, 12h);
    /// the start of this month by default.
    #[arg(long)]
    since: Option<String>,
}

impl SpendArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let now = crate::clock::now_ms();
        let since = match &self.since {
            Some(s) => crate::offline::logset::parse_since(s, now)?,
            None => crate::clock::month_start_ms(now),
        };
        let store = open(&self.database).await?;
        let rows = store.spend(since).await?;
        store.close().await;
        print!("{}", spend_table(&rows));
        Ok(())
    }
}

fn spend_table(rows: &[crate::store::SpendRow]) -> String {
    use std::collections::BTreeMap;
    let mut out = format!(
        "{:<10} {:<16} {:<22} {:<20} {:>7} {:>12}\n",
        "day", "tenant", "key", "model", "calls", "usd"
    );
    let mut tenants: BTreeMap<&str, f64> = BTreeMap::new();
    let mut keys: BTreeMap<&str, f64> = BTreeMap::new();
    let mut shadow = 0.0;
    for r in rows {
        let key = r.key_id.as_deref().unwrap_or("-");
        // Shadow calls are listed apart: no budget is charged for them.
        let model = if r.shadow {
            format!("{} (shadow)", r.model)
        } else {
            r.model.clone()
        };
        out.push_str(&format!(
            "{:<10} {:<16} {:<22} {:<20} {:>7} {:>12.6}\n",
            r.day, r.tenant, key, model, r.calls, r.usd
        ));
        if r.shadow {
            shadow += r.usd;
            continue;
        }
        *tenants.entry(&r.tenant).or_default() += r.usd;
        *keys.entry(key).or_default() += r.usd;
    }
    for (t, usd) in tenants {
        out.push_str(&format!("total tenant {t:<16} {usd:>12.6}\n"));
    }
    for (k, usd) in keys {
        out.push_str(&format!("total key    {k:<22} {usd:>12.6}\n"));
    }
    if shadow > 0.0 {
        out.push_str(&format!("total shadow {:<16} {shadow:>12.6}\n", ""));
    }
    out
}
