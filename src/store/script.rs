//! A batch of plain inserts as one SQL script: `BEGIN IMMEDIATE`, every
//! statement, `COMMIT`, sent to SQLite in one call.
//!
//! sqlx runs a SQLite connection on its own thread, so every statement is a
//! round trip between threads (about 40 µs here, more than the insert
//! itself). A Complete used to cost seven of them; as a script its decision
//! and attempts cost one. Writes that read first (feedback, policy versions)
//! keep the statement-by-statement path. So does a batch whose script failed
//! (say, attempts of an unknown decision): it is rolled back and applied job
//! by job, which fails only the job at fault.

use sqlx::{AssertSqlSafe, SqliteConnection};

use super::sql::{
    INSERT_ATTEMPT, INSERT_DECISION, Q, SET_SERVED, bind_attempt, bind_decision, bind_served,
};
use super::writer::{Job, Write};

/// Whether every write in `batch` can run inside one script.
pub(super) fn fits(batch: &[Job]) -> bool {
    batch.iter().all(|j| match &j.write {
        Write::Decision { .. } | Write::Attempts { .. } => true,
        Write::Feedback(_) | Write::PolicyVersion { .. } => false,
    })
}

/// Runs the whole batch as one transaction in one round trip. On an error
/// nothing of it is committed (the caller rolls back and retries job by job).
pub(super) async fn run(conn: &mut SqliteConnection, batch: &[Job]) -> Result<(), sqlx::Error> {
    let mut sql = String::from("BEGIN IMMEDIATE;");
    for job in batch {
        for_each_statement(&job.write, |text| {
            sql.push_str(text);
            sql.push(';');
        });
    }
    sql.push_str("COMMIT");
    // Lone requests repeat a few shapes worth caching; a group commit's
    // shape is one of many, and would only churn the statement cache.
    let mut q: Q<'_> = sqlx::query(AssertSqlSafe(sql)).persistent(batch.len() <= 2);
    for job in batch {
        q = bind(q, &job.write);
    }
    q.execute(&mut *conn).await.map(|_| ())
}

fn for_each_statement(write: &Write, mut f: impl FnMut(&'static str)) {
    match write {
        Write::Decision { attempts, .. } => {
            f(INSERT_DECISION);
            attempts.iter().for_each(|_| f(INSERT_ATTEMPT));
        }
        Write::Attempts { attempts, .. } => {
            attempts.iter().for_each(|_| f(INSERT_ATTEMPT));
            f(SET_SERVED);
        }
        Write::Feedback(_) | Write::PolicyVersion { .. } => {}
    }
}

fn bind<'q>(mut q: Q<'q>, write: &'q Write) -> Q<'q> {
    match write {
        Write::Decision { row, attempts } => {
            q = bind_decision(q, row);
            for (seq, a) in attempts.iter().enumerate() {
                q = bind_attempt(q, &row.id, seq, a);
            }
            q
        }
        Write::Attempts {
            decision_id,
            attempts,
            served_model,
        } => {
            for (seq, a) in attempts.iter().enumerate() {
                q = bind_attempt(q, decision_id, seq, a);
            }
            bind_served(q, decision_id, served_model)
        }
        Write::Feedback(_) | Write::PolicyVersion { .. } => q,
    }
}
