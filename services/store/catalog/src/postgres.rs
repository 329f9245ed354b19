//! The catalog in PostgreSQL, shared by every API node and worker of a scaled-out
//! deployment, through `tokio-postgres` with a `deadpool` connection pool.
//!
//! The schema is versioned: [`MIGRATIONS`] are applied in order by
//! [`PostgresCatalog::migrate`] (`zhiku migrate`), each in the transaction that records
//! it, under an advisory lock so two nodes migrating at once take turns. A server refuses
//! to start on a schema other than the one it was built for, naming the command to run.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use zhiku_schemas::DocumentInfo;

use crate::{
    Catalog, CatalogError, Commit, FileRecord, Intent, JobCounts, Lease, StoredJob, decode, encode,
};

mod conversations;
mod keys;

/// The schema, one step per entry: `(version, name, SQL)`. Steps are never edited once
/// released; a change is a new step.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "catalog", include_str!("../migrations/0001_catalog.sql")),
    (
        2,
        "conversations",
        include_str!("../migrations/0002_conversations.sql"),
    ),
    (
        3,
        "api keys",
        include_str!("../migrations/0003_api_keys.sql"),
    ),
    (
        4,
        "intent_times",
        include_str!("../migrations/0004_intent_times.sql"),
    ),
];

/// Key of the advisory lock migrations take (any constant; "zhiku" in ASCII).
const MIGRATION_LOCK: i64 = 0x7a_68_69_6b_75;

/// How to reach the PostgreSQL server.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// Connection URL, `postgres://user:password@host:port/database`.
    pub url: String,
    /// Most connections this process opens.
    pub pool_size: usize,
    /// Time allowed for connecting and for one catalog operation.
    pub timeout: Duration,
}

/// The catalog in a PostgreSQL database.
pub struct PostgresCatalog {
    pool: Pool,
    runtime: Option<tokio::runtime::Runtime>,
    /// `host:port/database`, for messages (the URL may hold a password).
    place: String,
    timeout: Duration,
}

impl Drop for PostgresCatalog {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime's task.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn storage(e: impl std::fmt::Display) -> CatalogError {
    CatalogError::Storage(e.to_string())
}

/// An error with its causes, "a: b: c": the driver's own message ("error connecting to
/// server") says little without the cause ("Connection refused").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Keeps the last of several records with the same key, as consecutive writes of one key
/// would: PostgreSQL refuses to update one row twice in one statement.
fn last_per_key<'a, T, K: std::hash::Hash + Eq>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Vec<&'a T> {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<&T> = items.iter().rev().filter(|t| seen.insert(key(t))).collect();
    kept.reverse();
    kept
}

/// Owned statement parameters, so that a statement can be sent to the client's runtime.
type Args = Vec<Box<dyn tokio_postgres::types::ToSql + Send + Sync>>;

/// [`Args`] from a list of owned values.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        vec![$(Box::new($arg) as Box<dyn tokio_postgres::types::ToSql + Send + Sync>),*]
    };
}
pub(crate) use args;

fn refs(args: &Args) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// A read-only transaction on one snapshot: reads that must agree with each other.
async fn snapshot(
    client: &mut deadpool_postgres::Client,
) -> Result<deadpool_postgres::Transaction<'_>, CatalogError> {
    Ok(client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl PostgresCatalog {
    /// Connects to the database; does not look at the schema (see
    /// [`check_schema`](Self::check_schema) and [`migrate`](Self::migrate)).
    pub fn connect(settings: &PostgresSettings) -> Result<Self, CatalogError> {
        let mut config: tokio_postgres::Config = settings.url.parse().map_err(|e| {
            CatalogError::Storage(format!("catalog.url is not a PostgreSQL URL: {e}"))
        })?;
        config.connect_timeout(settings.timeout);
        if config.get_application_name().is_none() {
            config.application_name("zhiku");
        }
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let place = format!(
            "{host}:{port}/{}",
            config.get_dbname().unwrap_or("postgres")
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("zhiku-postgres")
            .enable_all()
            .build()
            .map_err(|e| storage(format!("starting the PostgreSQL client: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(settings.timeout))
            .create_timeout(Some(settings.timeout))
            .build()
            .map_err(|e| storage(format!("PostgreSQL pool: {e}")))?;
        let catalog = Self {
            pool,
            runtime: Some(runtime),
            place,
            timeout: settings.timeout,
        };
        catalog
            .call(|pool| async move {
                pool.get().await?.simple_query("SELECT 1").await?;
                Ok(())
            })
            .map_err(|e| {
                let detail = match e {
                    CatalogError::Storage(detail) => detail,
                    e => e.to_string(),
                };
                CatalogError::Unreachable(format!(
                    "cannot reach the PostgreSQL catalog at {}: {detail}",
                    catalog.place
                ))
            })?;
        Ok(catalog)
    }

    /// `host:port/database` of the catalog, without credentials.
    pub fn place(&self) -> &str {
        &self.place
    }

    /// Runs one operation on the client's runtime and waits for it; works from any
    /// thread, including another runtime's. An operation that outlasts the timeout fails
    /// rather than hanging its caller.
    fn call<T, F, Fut>(&self, operation: F) -> Result<T, CatalogError>
    where
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T, CatalogError>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(storage("the PostgreSQL client is closed"));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let future = operation(self.pool.clone());
        let timeout = self.timeout;
        runtime.spawn(async move {
            let outcome = match tokio::time::timeout(timeout, future).await {
                Ok(outcome) => outcome,
                Err(_) => Err(storage(format!(
                    "PostgreSQL did not answer within {} s",
                    timeout.as_secs()
                ))),
            };
            let _ = tx.send(outcome);
        });
        rx.recv()
            .map_err(|_| storage("the PostgreSQL client stopped"))?
    }

    /// Runs one statement on its own; returns the rows it changed.
    fn execute(&self, sql: &str, args: Args) -> Result<u64, CatalogError> {
        let sql = sql.to_string();
        self.call(move |pool| async move {
            let client = pool.get().await?;
            let statement = client.prepare_cached(&sql).await?;
            Ok(client.execute(&statement, &refs(&args)).await?)
        })
    }

    /// Runs one query (or statement with `RETURNING`) on its own; returns its rows.
    fn rows(&self, sql: &str, args: Args) -> Result<Vec<tokio_postgres::Row>, CatalogError> {
        let sql = sql.to_string();
        // Prepared once per pooled connection: a bare query costs a second round trip
        // (parse, then bind), and the generation check runs on every request.
        self.call(move |pool| async move {
            let client = pool.get().await?;
            let statement = client.prepare_cached(&sql).await?;
            Ok(client.query(&statement, &refs(&args)).await?)
        })
    }

    /// The schema version the database is at (0: never migrated).
    pub fn schema_version(&self) -> Result<i32, CatalogError> {
        self.call(|pool| async move {
            let client = pool.get().await?;
            let exists: bool = client
                .query_one("SELECT to_regclass('zhiku_migrations') IS NOT NULL", &[])
                .await?
                .get(0);
            if !exists {
                return Ok(0);
            }
            let row = client
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM zhiku_migrations",
                    &[],
                )
                .await?;
            Ok(row.get(0))
        })
    }

    /// Fails unless the schema is exactly the one this build knows, naming the fix.
    pub fn check_schema(&self) -> Result<(), CatalogError> {
        let have = self.schema_version()?;
        let want = latest_schema();
        if have < want {
            return Err(CatalogError::Schema(format!(
                "the catalog at {} is at schema version {have}, this zhiku needs {want}: \
                 run `zhiku migrate`",
                self.place
            )));
        }
        if have > want {
            return Err(CatalogError::Schema(format!(
                "the catalog at {} is at schema version {have}, newer than this zhiku \
                 knows ({want}): upgrade zhiku",
                self.place
            )));
        }
        Ok(())
    }

    /// Applies the migrations the database lacks, in order; returns `(version, name)` of
    /// each one applied (none when it is up to date).
    pub fn migrate(&self) -> Result<Vec<(i32, String)>, CatalogError> {
        self.call(|pool| async move {
            let mut client = pool.get().await?;
            let txn = client.transaction().await?;
            txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            txn.batch_execute(
                "CREATE TABLE IF NOT EXISTS zhiku_migrations (
                     version    integer PRIMARY KEY,
                     name       text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await?;
            let have: i32 = txn
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM zhiku_migrations",
                    &[],
                )
                .await?
                .get(0);
            let mut applied = Vec::new();
            for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > have) {
                txn.batch_execute(sql).await.map_err(|e| {
                    CatalogError::Schema(format!("migration {version} ({name}) failed: {e}"))
                })?;
                txn.execute(
                    "INSERT INTO zhiku_migrations (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .await?;
                applied.push((*version, name.to_string()));
            }
            txn.commit().await?;
            Ok(applied)
        })
    }
}

/// The schema version this build needs.
pub fn latest_schema() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Intents from rows of `document_id, version`.
fn intents(rows: &[tokio_postgres::Row]) -> Vec<Intent> {
    rows.iter()
        .map(|r| Intent {
            document_id: r.get(0),
            version: r.get::<_, i64>(1) as u64,
        })
        .collect()
}

fn decode_text<T: for<'de> serde::Deserialize<'de>>(text: &str) -> Result<T, CatalogError> {
    decode(text.as_bytes())
}

fn encode_text<T: serde::Serialize>(value: &T) -> String {
    // The records are JSON objects of plain fields: always UTF-8.
    String::from_utf8(encode(value)).expect("JSON is UTF-8")
}

impl Catalog for PostgresCatalog {
    fn document(&self, kb: &str, id: &str) -> Result<Option<DocumentInfo>, CatalogError> {
        let rows = self.rows(
            "SELECT record::text FROM documents WHERE kb = $1 AND id = $2",
            args![kb.to_string(), id.to_string()],
        )?;
        rows.first().map(|r| decode_text(r.get(0))).transpose()
    }

    fn documents(
        &self,
        kb: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DocumentInfo>, bool), CatalogError> {
        // One more than asked tells whether more follow.
        let rows = self.rows(
            "SELECT record::text FROM documents WHERE kb = $1 AND id > $2 \
             ORDER BY id LIMIT $3",
            args![
                kb.to_string(),
                after.unwrap_or("").to_string(),
                sql_limit(limit).saturating_add(1)
            ],
        )?;
        let docs = rows
            .iter()
            .take(limit)
            .map(|r| decode_text(r.get(0)))
            .collect::<Result<Vec<DocumentInfo>, _>>()?;
        Ok((docs, rows.len() > limit))
    }

    fn kbs(&self) -> Result<Vec<String>, CatalogError> {
        let rows = self.rows(
            "SELECT kb FROM documents UNION SELECT kb FROM intents ORDER BY 1",
            args![],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn begin_versions(&self, kb: &str, ids: &[&str]) -> Result<Vec<u64>, CatalogError> {
        let kb = kb.to_string();
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        self.call(|pool| async move {
            let mut client = pool.get().await?;
            let txn = client.transaction().await?;
            let count = i32::try_from(ids.len()).map_err(storage)?;
            let rows = txn
                .query(
                    "SELECT nextval('document_versions') FROM generate_series(1, $1)",
                    &[&count],
                )
                .await?;
            let mut versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            versions.sort_unstable();
            txn.execute(
                "INSERT INTO intents (kb, document_id, version) \
                 SELECT $1, d, v FROM unnest($2::text[], $3::bigint[]) AS t(d, v) \
                 ON CONFLICT DO NOTHING",
                &[&kb, &ids, &versions],
            )
            .await?;
            txn.commit().await?;
            Ok(versions.into_iter().map(|v| v as u64).collect())
        })
    }

    fn commit(&self, kb: &str, commit: &Commit) -> Result<(), CatalogError> {
        let kb = kb.to_string();
        let upserts = last_per_key(&commit.upserts, |d| d.id.as_str());
        let doc_ids: Vec<String> = upserts.iter().map(|d| d.id.clone()).collect();
        let doc_versions: Vec<i64> = upserts.iter().map(|d| d.version as i64).collect();
        let doc_records: Vec<String> = upserts.iter().map(|d| encode_text(*d)).collect();
        let deletes = commit.deletes.clone();
        let files = last_per_key(&commit.files, |(job, f)| {
            (job.as_str(), f.document_id.as_str())
        });
        let file_jobs: Vec<String> = files.iter().map(|(j, _)| j.clone()).collect();
        let file_docs: Vec<String> = files.iter().map(|(_, f)| f.document_id.clone()).collect();
        let file_records: Vec<String> = files.iter().map(|(_, f)| encode_text(f)).collect();
        let jobs: Vec<JobRow> = last_per_key(&commit.jobs, |j| j.info.id.as_str())
            .into_iter()
            .map(JobRow::of)
            .collect();
        self.call(|pool| async move {
            let mut client = pool.get().await?;
            let txn = client.transaction().await?;
            if !doc_ids.is_empty() {
                txn.execute(
                    "INSERT INTO documents (kb, id, version, record) \
                     SELECT $1, i, v, r::jsonb \
                     FROM unnest($2::text[], $3::bigint[], $4::text[]) AS t(i, v, r) \
                     ON CONFLICT (kb, id) DO UPDATE \
                     SET version = EXCLUDED.version, record = EXCLUDED.record",
                    &[&kb, &doc_ids, &doc_versions, &doc_records],
                )
                .await?;
            }
            if !deletes.is_empty() {
                txn.execute(
                    "WITH gone AS (DELETE FROM documents WHERE kb = $1 AND id = ANY($2) \
                     RETURNING id) \
                     INSERT INTO intents (kb, document_id, version) \
                     SELECT $1, id, 0 FROM gone ON CONFLICT DO NOTHING",
                    &[&kb, &deletes],
                )
                .await?;
            }
            if !file_jobs.is_empty() {
                txn.execute(
                    "INSERT INTO job_files (job_id, document_id, record) \
                     SELECT j, d, r::jsonb \
                     FROM unnest($1::text[], $2::text[], $3::text[]) AS t(j, d, r) \
                     ON CONFLICT (job_id, document_id) DO UPDATE SET record = EXCLUDED.record",
                    &[&file_jobs, &file_docs, &file_records],
                )
                .await?;
            }
            for job in &jobs {
                job.upsert(&*txn).await?;
            }
            if !doc_ids.is_empty() || !deletes.is_empty() {
                bump(&txn, &kb).await?;
            }
            txn.commit().await?;
            Ok(())
        })
    }

    fn reserve_versions(&self, above: u64) -> Result<(), CatalogError> {
        let above = i64::try_from(above).map_err(storage)?;
        self.rows(
            "SELECT setval('document_versions', \
             GREATEST($1, (SELECT last_value FROM document_versions)))",
            args![above],
        )?;
        Ok(())
    }

    fn intents(&self, kb: &str) -> Result<Vec<Intent>, CatalogError> {
        let rows = self.rows(
            "SELECT document_id, version FROM intents WHERE kb = $1 \
             ORDER BY document_id, version",
            args![kb.to_string()],
        )?;
        Ok(intents(&rows))
    }

    fn stale_intents(&self, kb: &str, age: Duration) -> Result<Vec<Intent>, CatalogError> {
        let rows = self.rows(
            "SELECT document_id, version FROM intents \
             WHERE kb = $1 AND recorded_at < now() - make_interval(secs => $2) \
             ORDER BY document_id, version",
            args![kb.to_string(), age.as_secs_f64()],
        )?;
        Ok(intents(&rows))
    }

    fn clear_intents(&self, kb: &str, intents: &[Intent]) -> Result<(), CatalogError> {
        let ids: Vec<String> = intents.iter().map(|i| i.document_id.clone()).collect();
        let versions: Vec<i64> = intents.iter().map(|i| i.version as i64).collect();
        self.execute(
            "DELETE FROM intents WHERE kb = $1 AND (document_id, version) IN \
             (SELECT d, v FROM unnest($2::text[], $3::bigint[]) AS t(d, v))",
            args![kb.to_string(), ids, versions],
        )?;
        Ok(())
    }

    fn purge_kb(&self, kb: &str) -> Result<(), CatalogError> {
        let kb = kb.to_string();
        self.call(|pool| async move {
            let mut client = pool.get().await?;
            let txn = client.transaction().await?;
            txn.execute("DELETE FROM documents WHERE kb = $1", &[&kb])
                .await?;
            txn.execute("DELETE FROM intents WHERE kb = $1", &[&kb])
                .await?;
            bump(&txn, &kb).await?;
            txn.commit().await?;
            Ok(())
        })
    }

    fn put_job(&self, job: &StoredJob) -> Result<(), CatalogError> {
        let row = JobRow::of(job);
        self.call(|pool| async move {
            let client = pool.get().await?;
            row.upsert(&**client).await
        })
    }

    fn job(&self, id: &str) -> Result<Option<StoredJob>, CatalogError> {
        let rows = self.rows(
            "SELECT record::text FROM jobs WHERE id = $1",
            args![id.to_string()],
        )?;
        rows.first().map(|r| decode_text(r.get(0))).transpose()
    }

    fn jobs(&self) -> Result<Vec<StoredJob>, CatalogError> {
        let rows = self.rows(
            "SELECT record::text FROM jobs ORDER BY created_at DESC, id DESC",
            args![],
        )?;
        rows.iter().map(|r| decode_text(r.get(0))).collect()
    }

    fn job_counts(&self) -> Result<JobCounts, CatalogError> {
        let rows = self.rows(
            "SELECT count(*) FILTER (WHERE lease_expires > now()), count(*) \
             FROM jobs WHERE NOT finished",
            args![],
        )?;
        let count = |i: usize| rows.first().map_or(0, |r| r.get::<_, i64>(i) as usize);
        let (running, unfinished) = (count(0), count(1));
        Ok(JobCounts {
            queued: unfinished - running,
            running,
        })
    }

    fn prune_jobs(&self, cutoff: &str) -> Result<usize, CatalogError> {
        let cutoff = cutoff.to_string();
        self.call(|pool| async move {
            let mut client = pool.get().await?;
            let txn = client.transaction().await?;
            let gone: Vec<String> = txn
                .query(
                    "DELETE FROM jobs WHERE finished AND finished_at < $1 RETURNING id",
                    &[&cutoff],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            txn.execute("DELETE FROM job_files WHERE job_id = ANY($1)", &[&gone])
                .await?;
            txn.commit().await?;
            Ok(gone.len())
        })
    }

    fn forget_job_files(&self, job_id: &str) -> Result<(), CatalogError> {
        self.execute(
            "DELETE FROM job_files WHERE job_id = $1",
            args![job_id.to_string()],
        )?;
        Ok(())
    }

    fn job_files(&self, job_id: &str) -> Result<HashMap<String, FileRecord>, CatalogError> {
        let rows = self.rows(
            "SELECT record::text FROM job_files WHERE job_id = $1",
            args![job_id.to_string()],
        )?;
        rows.iter()
            .map(|r| {
                let record: FileRecord = decode_text(r.get(0))?;
                Ok((record.document_id.clone(), record))
            })
            .collect()
    }

    fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
        only: Option<&str>,
    ) -> Result<Option<(StoredJob, bool)>, CatalogError> {
        // SKIP LOCKED: a job another worker is claiming this instant is passed over, not
        // waited for, so claims never queue behind each other.
        let rows = self.rows(
            "UPDATE jobs SET lease_owner = $1, \
             lease_expires = now() + make_interval(secs => $2) \
             WHERE id = (SELECT id FROM jobs WHERE NOT finished \
               AND (lease_expires IS NULL OR lease_expires < now()) \
               AND ($3::text IS NULL OR id = $3) \
               ORDER BY created_at, id FOR UPDATE SKIP LOCKED LIMIT 1) \
             RETURNING record::text, cancel_requested",
            args![
                worker.to_string(),
                lease.as_secs_f64(),
                only.map(str::to_string)
            ],
        )?;
        rows.first()
            .map(|r| Ok((decode_text(r.get(0))?, r.get(1))))
            .transpose()
    }

    fn renew_lease(&self, id: &str, worker: &str, lease: Duration) -> Result<Lease, CatalogError> {
        let rows = self.rows(
            "UPDATE jobs SET lease_expires = now() + make_interval(secs => $3) \
             WHERE id = $1 AND lease_owner = $2 AND NOT finished \
             RETURNING cancel_requested",
            args![id.to_string(), worker.to_string(), lease.as_secs_f64()],
        )?;
        Ok(match rows.first() {
            Some(r) => Lease::Held {
                cancel_requested: r.get(0),
            },
            None => Lease::Lost,
        })
    }

    fn release_job(&self, id: &str, worker: &str) -> Result<(), CatalogError> {
        self.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL \
             WHERE id = $1 AND lease_owner = $2",
            args![id.to_string(), worker.to_string()],
        )?;
        Ok(())
    }

    fn request_cancel(&self, id: &str) -> Result<bool, CatalogError> {
        let changed = self.execute(
            "UPDATE jobs SET cancel_requested = true WHERE id = $1 AND NOT finished",
            args![id.to_string()],
        )?;
        Ok(changed > 0)
    }

    fn shared(&self) -> bool {
        true
    }

    fn kb_names(&self) -> Result<Vec<String>, CatalogError> {
        let rows = self.rows("SELECT name FROM kbs ORDER BY name", args![])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn kb_record(&self, kb: &str) -> Result<Option<(String, u64)>, CatalogError> {
        let rows = self.rows(
            "SELECT record::text, generation FROM kbs WHERE name = $1",
            args![kb.to_string()],
        )?;
        Ok(rows.first().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)))
    }

    fn kb_generation(&self, kb: &str) -> Result<Option<u64>, CatalogError> {
        let rows = self.rows(
            "SELECT generation FROM kbs WHERE name = $1",
            args![kb.to_string()],
        )?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0) as u64))
    }

    fn create_kb(&self, kb: &str, record: &str) -> Result<String, CatalogError> {
        // One statement: the new record, or the one another node stored first.
        let rows = self.rows(
            "WITH added AS (INSERT INTO kbs (name, record) VALUES ($1, $2::text::jsonb) \
             ON CONFLICT (name) DO NOTHING RETURNING record) \
             SELECT record::text FROM added \
             UNION ALL SELECT record::text FROM kbs WHERE name = $1",
            args![kb.to_string(), record.to_string()],
        )?;
        rows.first()
            .map(|r| r.get(0))
            .ok_or_else(|| CatalogError::Storage(format!("KB {kb} was deleted while created")))
    }

    fn put_kb_record(&self, kb: &str, record: &str) -> Result<(), CatalogError> {
        self.execute(
            "INSERT INTO kbs (name, record) VALUES ($1, $2::text::jsonb) \
             ON CONFLICT (name) DO UPDATE \
             SET record = EXCLUDED.record, generation = kbs.generation + 1",
            args![kb.to_string(), record.to_string()],
        )?;
        Ok(())
    }

    fn remove_kb_record(&self, kb: &str) -> Result<bool, CatalogError> {
        let gone = self.execute("DELETE FROM kbs WHERE name = $1", args![kb.to_string()])?;
        Ok(gone > 0)
    }
}

/// Moves `kb`'s generation on: what nodes cached of it is stale.
async fn bump(txn: &deadpool_postgres::Transaction<'_>, kb: &str) -> Result<(), CatalogError> {
    txn.execute(
        "UPDATE kbs SET generation = generation + 1 WHERE name = $1",
        &[&kb],
    )
    .await?;
    Ok(())
}

/// A job record with the columns queries use beside it.
struct JobRow {
    id: String,
    kb: String,
    created_at: String,
    finished: bool,
    finished_at: Option<String>,
    record: String,
}

impl JobRow {
    fn of(job: &StoredJob) -> Self {
        Self {
            id: job.info.id.clone(),
            kb: job.info.kb.to_string(),
            created_at: job.info.created_at.clone(),
            finished: job.info.state.is_finished(),
            finished_at: job.info.finished_at.clone(),
            record: encode_text(job),
        }
    }

    /// Inserts or updates the job; a lease or cancel request on it is left alone.
    async fn upsert(
        &self,
        client: &impl tokio_postgres::GenericClient,
    ) -> Result<(), CatalogError> {
        client
            .execute(
                "INSERT INTO jobs (id, kb, created_at, finished, finished_at, record) \
                 VALUES ($1, $2, $3, $4, $5, $6::text::jsonb) \
                 ON CONFLICT (id) DO UPDATE SET finished = EXCLUDED.finished, \
                 finished_at = EXCLUDED.finished_at, record = EXCLUDED.record",
                &[
                    &self.id,
                    &self.kb,
                    &self.created_at,
                    &self.finished,
                    &self.finished_at,
                    &self.record,
                ],
            )
            .await?;
        Ok(())
    }
}

impl From<tokio_postgres::Error> for CatalogError {
    fn from(e: tokio_postgres::Error) -> Self {
        CatalogError::Storage(with_causes(&e))
    }
}

impl From<deadpool_postgres::PoolError> for CatalogError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        CatalogError::Storage(with_causes(&e))
    }
}
