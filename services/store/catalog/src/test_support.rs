//! Throwaway PostgreSQL databases for tests, on the server `ZHIKU_TEST_POSTGRES_URL`
//! names (the README's test command starts a private one with `deploy/postgres.sh`).

use std::time::Duration;

use crate::{PostgresCatalog, PostgresSettings};

/// The variable naming the test server.
pub const POSTGRES_URL_VAR: &str = "ZHIKU_TEST_POSTGRES_URL";

/// A database of its own for one test, migrated, dropped when this goes out of scope.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// URL of the test's database.
    pub url: String,
}

/// The URL of the test server. Panics, naming the fix, when it is not set: the catalog
/// tests must not pass without having run.
pub fn server_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VAR} is not set: the PostgreSQL catalog tests need a server. \
             Run deploy/test.sh (it starts a private one), or start one with \
             `deploy/postgres.sh start DIR` and export the URL it prints"
        )
    })
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    // The database is what follows the first '/' after "scheme://authority".
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Runs `sql` on the server's own database, from a thread of its own so that callers
/// inside an async runtime can use it too.
fn admin(url: &str, sql: String) {
    let url = url.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {url}: {e}"));
            tokio::spawn(connection);
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
    })
    .join()
    .unwrap();
}

/// Creates database `name` (letters, digits and `_`) on the server at `server_url` and
/// migrates it; returns its URL. Nothing drops it: the caller's server is throwaway.
pub fn create_database(server_url: &str, name: &str) -> String {
    let url = create_bare_database(server_url, name);
    let settings = PostgresSettings {
        url: url.clone(),
        pool_size: 1,
        timeout: Duration::from_secs(120),
    };
    PostgresCatalog::connect(&settings)
        .and_then(|c| c.migrate())
        .expect("migrating the test database");
    url
}

/// Creates database `name` without migrating it; returns its URL.
fn create_bare_database(server_url: &str, name: &str) -> String {
    admin(server_url, format!("CREATE DATABASE {name}"));
    with_database(server_url, name)
}

impl TestDatabase {
    /// Creates a fresh, empty database on the test server, not migrated.
    pub fn bare() -> Self {
        let admin_url = server_url();
        let name = format!("zhiku_test_{}", uuid_like());
        let url = create_bare_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// Creates a fresh database on the test server and migrates it.
    pub fn create() -> Self {
        let admin_url = server_url();
        let name = format!("zhiku_test_{}", uuid_like());
        let url = create_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// Settings reaching this database.
    pub fn settings(&self) -> PostgresSettings {
        PostgresSettings {
            url: self.url.clone(),
            pool_size: 4,
            timeout: Duration::from_secs(120),
        }
    }

    /// A new connection to this database.
    pub fn catalog(&self) -> PostgresCatalog {
        PostgresCatalog::connect(&self.settings()).expect("connecting to the test database")
    }

    /// Runs `sql` on this database, for states the catalog's API cannot make, such as
    /// an intent recorded hours ago.
    pub fn execute(&self, sql: &str) {
        admin(&self.url, sql.to_string());
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        admin(
            &self.admin_url,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A name part unique across the processes and threads of a test run.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@h:5/zhiku?sslmode=disable", "t1"),
            "postgres://u:p@h:5/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:5", "t1"), "postgres://h:5/t1");
    }
}
