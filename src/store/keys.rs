//! API keys: written by the CLI and the admin API (rare and operator-driven,
//! so through the read pool, like promotions), read whole by the service
//! and polled for changes.

use sqlx::Row;

use super::{SqliteStore, StoreError};

/// One API key as stored: everything but its secret.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeyRow {
    pub id: String,
    /// Hex SHA-256 of the secret.
    #[serde(skip)]
    pub hash: String,
    pub tenant: String,
    pub name: String,
    pub tier: String,
    /// Allowed models; empty: every model.
    pub models: Vec<String>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub budget_day_usd: Option<f64>,
    pub budget_month_usd: Option<f64>,
    /// While the shared rate limiter is unreachable: "open" or "closed";
    /// `None` follows `limits.on_unreachable`.
    pub on_unreachable: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

impl KeyRow {
    /// A key of `tenant` with no settings, made at `at_ms`.
    pub fn new(id: String, hash: String, tenant: String, at_ms: i64) -> KeyRow {
        KeyRow {
            id,
            hash,
            tenant,
            name: String::new(),
            tier: String::new(),
            models: Vec::new(),
            rpm: None,
            tpm: None,
            budget_day_usd: None,
            budget_month_usd: None,
            on_unreachable: None,
            created_at_ms: at_ms,
            updated_at_ms: at_ms,
            revoked_at_ms: None,
        }
    }

    /// The id a tenant's settings go by in limits and spend: one no key
    /// can have (key ids are `key_` + hex).
    pub fn tenant_id(tenant: &str) -> String {
        format!("tenant:{tenant}")
    }

    /// Whether this row is a tenant's settings rather than a key.
    pub fn is_tenant(&self) -> bool {
        self.id.starts_with("tenant:")
    }

    /// What a refusal names: "the API key key_…" or "the tenant acme".
    pub fn who(&self) -> String {
        if self.is_tenant() {
            format!("the tenant {}", self.tenant)
        } else {
            format!("the API key {}", self.id)
        }
    }

    /// A key of `tenant` with no settings, for tests.
    #[cfg(test)]
    pub fn plain(id: &str, tenant: &str) -> KeyRow {
        KeyRow::new(id.into(), String::new(), tenant.into(), 0)
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds what a key's settings are, in the column order both writes use.
fn settings<'q>(q: Query<'q>, k: &'q KeyRow) -> Query<'q> {
    q.bind(&k.name)
        .bind(&k.tier)
        .bind(serde_json::to_string(&k.models).unwrap_or_else(|_| "[]".into()))
        .bind(k.rpm)
        .bind(k.tpm)
        .bind(k.budget_day_usd)
        .bind(k.budget_month_usd)
        .bind(&k.on_unreachable)
        .bind(k.updated_at_ms)
        .bind(k.revoked_at_ms)
}

impl SqliteStore {
    pub async fn insert_key(&self, k: &KeyRow) -> Result<(), StoreError> {
        let q = sqlx::query(
            "INSERT INTO api_keys (id, hash, tenant, created_at_ms, name, tier, models, rpm, tpm,
               budget_day_usd, budget_month_usd, on_unreachable, updated_at_ms, revoked_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.id)
        .bind(&k.hash)
        .bind(&k.tenant)
        .bind(k.created_at_ms);
        settings(q, k).execute(&self.pool).await?;
        Ok(())
    }

    /// Replaces a key's settings (not its id, secret or tenant); false when
    /// there is no such key.
    pub async fn update_key(&self, k: &KeyRow) -> Result<bool, StoreError> {
        let q = sqlx::query(
            "UPDATE api_keys SET name = ?, tier = ?, models = ?, rpm = ?, tpm = ?,
               budget_day_usd = ?, budget_month_usd = ?, on_unreachable = ?, updated_at_ms = ?,
               revoked_at_ms = ?
             WHERE id = ?",
        );
        let done = settings(q, k).bind(&k.id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every key, revoked ones too, oldest first.
    pub async fn keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, hash, tenant, name, tier, models, rpm, tpm, budget_day_usd,
               budget_month_usd, on_unreachable, created_at_ms, updated_at_ms, revoked_at_ms
             FROM api_keys ORDER BY created_at_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| KeyRow {
                id: r.get("id"),
                hash: r.get("hash"),
                tenant: r.get("tenant"),
                name: r.get("name"),
                tier: r.get("tier"),
                models: serde_json::from_str(r.get::<&str, _>("models")).unwrap_or_default(),
                rpm: r.get("rpm"),
                tpm: r.get("tpm"),
                budget_day_usd: r.get("budget_day_usd"),
                budget_month_usd: r.get("budget_month_usd"),
                on_unreachable: r.get("on_unreachable"),
                created_at_ms: r.get("created_at_ms"),
                updated_at_ms: r.get("updated_at_ms"),
                revoked_at_ms: r.get("revoked_at_ms"),
            })
            .collect())
    }
}

impl SqliteStore {
    /// Writes a tenant's settings (a [`KeyRow`] with its tenant's id).
    pub async fn upsert_tenant(&self, t: &KeyRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tenants (tenant, tier, models, rpm, tpm, budget_day_usd,
               budget_month_usd, created_at_ms, updated_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tenant) DO UPDATE SET tier = excluded.tier, models = excluded.models,
               rpm = excluded.rpm, tpm = excluded.tpm, budget_day_usd = excluded.budget_day_usd,
               budget_month_usd = excluded.budget_month_usd, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&t.tenant)
        .bind(&t.tier)
        .bind(serde_json::to_string(&t.models).unwrap_or_else(|_| "[]".into()))
        .bind(t.rpm)
        .bind(t.tpm)
        .bind(t.budget_day_usd)
        .bind(t.budget_month_usd)
        .bind(t.created_at_ms)
        .bind(t.updated_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every tenant's settings, as rows with the tenant's id.
    pub async fn tenants(&self) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant, tier, models, rpm, tpm, budget_day_usd, budget_month_usd,
               created_at_ms, updated_at_ms
             FROM tenants ORDER BY tenant",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let tenant: String = r.get("tenant");
                KeyRow {
                    tier: r.get("tier"),
                    models: serde_json::from_str(r.get::<&str, _>("models")).unwrap_or_default(),
                    rpm: r.get("rpm"),
                    tpm: r.get("tpm"),
                    budget_day_usd: r.get("budget_day_usd"),
                    budget_month_usd: r.get("budget_month_usd"),
                    updated_at_ms: r.get("updated_at_ms"),
                    ..KeyRow::new(
                        KeyRow::tenant_id(&tenant),
                        String::new(),
                        tenant,
                        r.get("created_at_ms"),
                    )
                }
            })
            .collect())
    }
}

/// Spend of one (day, tenant, key, model), from the attempts' costs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpendRow {
    /// UTC, `YYYY-MM-DD`.
    pub day: String,
    pub tenant: String,
    pub key_id: Option<String>,
    pub model: String,
    pub usd: f64,
    /// Attempts that cost something.
    pub calls: i64,
    /// Shadow calls (`[[routes]]` shadows): spend apart, charged to no budget.
    pub shadow: bool,
}

impl SqliteStore {
    /// Spend per UTC day, tenant, key and model, of attempts (and, apart,
    /// shadow calls) started at or after `since_ms`.
    pub async fn spend(&self, since_ms: i64) -> Result<Vec<SpendRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT date(started_at_ms / 1000, 'unixepoch') AS day, tenant, key_id, model, shadow,
                    SUM(cost_usd) AS usd, COUNT(*) AS calls
             FROM (SELECT a.started_at_ms, d.tenant, d.key_id, a.model, 0 AS shadow, a.cost_usd
                   FROM attempts a JOIN decisions d ON d.id = a.decision_id
                   WHERE a.started_at_ms >= ?1 AND a.cost_usd > 0
                   UNION ALL
                   SELECT started_at_ms, tenant, key_id, model, 1, cost_usd
                   FROM shadows WHERE started_at_ms >= ?1 AND cost_usd > 0)
             GROUP BY day, tenant, key_id, model, shadow
             ORDER BY day, tenant, key_id, shadow, model",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SpendRow {
                day: r.get("day"),
                tenant: r.get("tenant"),
                key_id: r.get("key_id"),
                model: r.get("model"),
                usd: r.get("usd"),
                calls: r.get("calls"),
                shadow: r.get("shadow"),
            })
            .collect())
    }
}
