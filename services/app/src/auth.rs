//! API keys: `zk_<id>_<secret>`, kept as a salted SHA-256 of the secret, with a scope:
//! admin, or read / write on one knowledge base.
//!
//! Where they are kept ([`KeyStore`]): on the embedded default, `<data_dir>/keys.json`,
//! apart from the catalog because the server holds the catalog's lock while it runs and
//! `zhiku keys` must work beside it; the server notices a changed file by its metadata on
//! each request and reloads it. With the PostgreSQL catalog, in its database, so every API
//! node knows every key; a node rereads them when their generation number changed.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zhiku_schemas::{Caller, CallerScope, KbName};

use crate::error::{ServiceError, kb_not_found};

/// Where the keys are kept.
#[derive(Clone)]
pub enum KeyStore {
    /// `keys.json` in this data directory.
    File(PathBuf),
    /// The PostgreSQL catalog's database.
    Postgres(std::sync::Arc<zhiku_catalog::PostgresCatalog>),
}

impl From<&Path> for KeyStore {
    fn from(data_dir: &Path) -> Self {
        KeyStore::File(data_dir.to_path_buf())
    }
}

impl KeyStore {
    /// The store `[catalog]` implies: the key file of the data directory, or the
    /// PostgreSQL catalog (which must be at this build's schema).
    pub fn for_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        match config.catalog.backend {
            crate::config::CatalogBackendChoice::Embedded => {
                Ok(KeyStore::File(config.server.data_dir.clone()))
            }
            crate::config::CatalogBackendChoice::Postgres => {
                let mut settings = config.postgres()?;
                // A request checks one number; few connections are plenty.
                settings.pool_size = settings.pool_size.min(2);
                let catalog = zhiku_catalog::PostgresCatalog::connect(&settings)?;
                catalog.check_schema()?;
                Ok(KeyStore::Postgres(std::sync::Arc::new(catalog)))
            }
        }
    }

    /// Which version of the keys is current.
    fn version(&self) -> Result<Version, ServiceError> {
        match self {
            KeyStore::File(dir) => Ok(Version::File(stamp(&dir.join(KEY_FILE))?)),
            KeyStore::Postgres(catalog) => catalog
                .api_keys_generation()
                .map(Version::Db)
                .map_err(key_db_error),
        }
    }

    /// The keys and their version; entries that make no sense fail the whole read.
    fn read(&self) -> Result<(Version, Vec<StoredKey>), ServiceError> {
        match self {
            KeyStore::File(dir) => {
                let path = dir.join(KEY_FILE);
                let version = Version::File(stamp(&path)?);
                Ok((version, read_file(&path)?.keys))
            }
            KeyStore::Postgres(catalog) => {
                let (generation, records) = catalog.api_keys().map_err(key_db_error)?;
                let keys = records
                    .iter()
                    .map(|r| serde_json::from_str::<StoredKey>(r).map_err(key_db_error))
                    .collect::<Result<Vec<_>, _>>()?;
                check_scopes(&keys).map_err(key_db_error)?;
                Ok((Version::Db(generation), keys))
            }
        }
    }
}

fn key_db_error(e: impl fmt::Display) -> ServiceError {
    ServiceError::Internal(format!("API keys in the catalog database: {e}"))
}

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "keys.json";
/// Taken by `zhiku keys` commands while they rewrite the key file, so two at once do not
/// lose each other's change.
const LOCK_FILE: &str = "keys.lock";
/// Every key starts with it, so a leaked key is recognisable (and secret scanners can be
/// taught the pattern).
const PREFIX: &str = "zk_";
/// Longest key name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Everything, on every knowledge base.
    Admin,
    /// Search, ask and read one knowledge base.
    Read,
    /// Read, and change one knowledge base: upload, delete, reindex, import.
    Write,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so the `keys list` table's column widths apply.
        f.pad(match self {
            Scope::Admin => "admin",
            Scope::Read => "read",
            Scope::Write => "write",
        })
    }
}

/// One key as stored: never the secret itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    /// Public part of the key, shown by `keys list` and used to revoke it.
    pub id: String,
    /// What the key may do.
    pub scope: Scope,
    /// The knowledge base of a read or write key (an invalid name fails the file's load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kb: Option<KbName>,
    /// The operator's label, e.g. who holds the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// RFC 3339 creation time.
    pub created: String,
    /// Random per key, so equal secrets (never expected) and precomputed tables do not
    /// show through the hashes.
    salt: String,
    /// Hex SHA-256 of the salt followed by the secret.
    hash: String,
}

impl StoredKey {
    /// The key's row in `keys list --json`: everything but salt and hash.
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "scope": self.scope,
            "kb": self.kb,
            "name": self.name,
            "created": self.created,
        })
    }
}

/// The key file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

fn secret_hash(salt: &str, secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(secret.as_bytes());
    zhiku_ingest::hex(&hasher.finalize())
}

/// The key a request presents, if its `Authorization` header is `Bearer <key>`.
fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The stored key that `token` is, if any. The hash is computed and compared in constant
/// time whether or not the id exists, so timing tells nothing about the secret.
fn verify<'a>(keys: &'a [StoredKey], token: &str) -> Option<&'a StoredKey> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    let key = keys.iter().find(|k| k.id == id);
    let (salt, expected) = key.map_or(("", ""), |k| (k.salt.as_str(), k.hash.as_str()));
    let digest = secret_hash(salt, secret);
    let matches: bool = digest.as_bytes().ct_eq(expected.as_bytes()).into();
    key.filter(|_| matches)
}

/// Who is calling, as the access check found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No keys exist and the server listens on loopback only: all is allowed.
    Open,
    /// An admin key.
    Admin {
        /// The key's id.
        id: String,
    },
    /// A key for one knowledge base.
    Kb {
        /// The key's id.
        id: String,
        /// The knowledge base.
        kb: String,
        /// Whether it may change the knowledge base (write implies read).
        write: bool,
    },
}

impl Principal {
    fn from_key(key: &StoredKey) -> Self {
        let id = key.id.clone();
        match (key.scope, &key.kb) {
            (Scope::Admin, _) => Principal::Admin { id },
            (scope, Some(kb)) => Principal::Kb {
                id,
                kb: kb.to_string(),
                write: scope == Scope::Write,
            },
            // A read or write key without a KB is refused when the file is loaded.
            (_, None) => Principal::Kb {
                id,
                kb: String::new(),
                write: false,
            },
        }
    }

    /// Who the caller is, as `GET /v1/auth` tells a client.
    pub fn caller(&self) -> Caller {
        let key_id = self.key_id().map(str::to_string);
        match self {
            Principal::Open => Caller {
                scope: CallerScope::Open,
                kb: None,
                key_id,
            },
            Principal::Admin { .. } => Caller {
                scope: CallerScope::Admin,
                kb: None,
                key_id,
            },
            Principal::Kb { kb, write, .. } => Caller {
                scope: if *write {
                    CallerScope::Write
                } else {
                    CallerScope::Read
                },
                kb: Some(kb.clone()),
                key_id,
            },
        }
    }

    /// The key's id; `None` when no key was needed.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Principal::Open => None,
            Principal::Admin { id } | Principal::Kb { id, .. } => Some(id),
        }
    }

    /// Whether the caller may read `kb`.
    pub fn can_read(&self, kb: &str) -> bool {
        match self {
            Principal::Open | Principal::Admin { .. } => true,
            Principal::Kb { kb: own, .. } => own == kb,
        }
    }

    /// Read access to `kb`, or the very 404 a knowledge base that does not exist gets,
    /// so a key cannot learn which other knowledge bases exist.
    pub fn read(&self, kb: &str) -> Result<(), ServiceError> {
        if self.can_read(kb) {
            Ok(())
        } else {
            Err(kb_not_found(kb))
        }
    }

    /// Write access to `kb`: a 404 as in [`Principal::read`] without read access, a 403
    /// with read access only (the caller knows the KB exists already).
    pub fn write(&self, kb: &str) -> Result<(), ServiceError> {
        self.read(kb)?;
        match self {
            Principal::Kb { write: false, .. } => Err(ServiceError::Forbidden(format!(
                "this API key may only read knowledge base {kb:?}"
            ))),
            _ => Ok(()),
        }
    }
}

/// What identifies one version of the key file: a rewrite replaces the file (new inode)
/// and normally changes its time and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Result<Option<Stamp>, ServiceError> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(Stamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(key_file_error(path, e)),
    }
}

fn key_file_error(path: &Path, e: impl fmt::Display) -> ServiceError {
    ServiceError::Internal(format!("key file {}: {e}", path.display()))
}

/// Entries that make no sense (a read key without a KB) fail the whole set rather than
/// being half-trusted.
fn check_scopes(keys: &[StoredKey]) -> Result<(), String> {
    for key in keys {
        let kb_ok = match key.scope {
            Scope::Admin => key.kb.is_none(),
            Scope::Read | Scope::Write => key.kb.is_some(),
        };
        if !kb_ok {
            return Err(format!(
                "key {} has scope {} with kb {:?}",
                key.id, key.scope, key.kb
            ));
        }
    }
    Ok(())
}

/// Reads the key file; a missing file is no keys.
fn read_file(path: &Path) -> Result<KeyFile, ServiceError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeyFile::default()),
        Err(e) => return Err(key_file_error(path, e)),
    };
    let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| key_file_error(path, e))?;
    check_scopes(&file.keys).map_err(|e| key_file_error(path, e))?;
    Ok(file)
}

/// Which version of the keys was read: the key file's identity, or the database's
/// generation number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    File(Option<Stamp>),
    Db(i64),
}

/// The keys as last read, and which version they came from.
struct Cached {
    version: Version,
    keys: Vec<StoredKey>,
}

/// The server's view of the keys, reloaded when they change.
pub struct Keys {
    store: KeyStore,
    /// Keys are required even when none exist: the server listens beyond loopback, so
    /// revoking the last key must lock everyone out rather than open the API.
    always_required: bool,
    cached: RwLock<Cached>,
}

impl Keys {
    /// Loads the keys of `store`; fails when they exist but cannot be used.
    pub fn load(store: impl Into<KeyStore>, always_required: bool) -> Result<Self, ServiceError> {
        let store = store.into();
        let (version, keys) = store.read()?;
        Ok(Self {
            store,
            always_required,
            cached: RwLock::new(Cached { version, keys }),
        })
    }

    /// How many keys exist now.
    pub fn count(&self) -> usize {
        self.cached.read().keys.len()
    }

    /// Rereads the keys if they changed since they were last read. Unreadable keys are a
    /// 500 for every request until fixed: failing open would undo revocations.
    fn refresh(&self) -> Result<(), ServiceError> {
        let now = self.store.version()?;
        if self.cached.read().version == now {
            return Ok(());
        }
        let (now, keys) = self.store.read()?;
        let mut cached = self.cached.write();
        let before = cached.keys.len();
        tracing::info!(keys = keys.len(), "API keys reloaded");
        if before > 0 && keys.is_empty() && !self.always_required {
            tracing::warn!("the last API key was revoked: the API is open on loopback again");
        }
        *cached = Cached { version: now, keys };
        Ok(())
    }

    /// Who presents `authorization` (the request's `Authorization` header, if it is
    /// text): a 401 for a missing, unknown or revoked key whenever keys are required.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ServiceError> {
        self.refresh()?;
        let cached = self.cached.read();
        if cached.keys.is_empty() && !self.always_required {
            return Ok(Principal::Open);
        }
        let token = bearer(authorization).ok_or_else(|| {
            ServiceError::Unauthorized(
                "an API key is required: send Authorization: Bearer zk_...".into(),
            )
        })?;
        verify(&cached.keys, token)
            .map(Principal::from_key)
            .ok_or_else(|| ServiceError::Unauthorized("invalid or revoked API key".into()))
    }
}

/// Rewrites the key file under the lock: read, change, write a temporary file (0600) and
/// rename it over the old one, so the server never reads half a file.
fn update<T>(
    data_dir: &Path,
    change: impl FnOnce(&mut KeyFile) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    std::fs::create_dir_all(data_dir)?;
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(LOCK_FILE))?;
    lock.lock()?;
    let path = data_dir.join(KEY_FILE);
    let mut file = read_file(&path)?;
    let result = change(&mut file)?;
    // NamedTempFile is created with mode 0600: the hashes are not secrets, but nobody
    // else needs them.
    let mut temp = tempfile::NamedTempFile::new_in(data_dir)?;
    temp.write_all(&serde_json::to_vec_pretty(&file)?)?;
    temp.as_file().sync_all()?;
    temp.persist(&path)?;
    Ok(result)
}

/// Creates a key with `scope` (on knowledge base `kb` unless it is an admin key) and an
/// optional label, and stores its salted hash; returns it with the full key text, which is
/// never stored and cannot be shown again.
pub fn create_key(
    store: &KeyStore,
    scope: Scope,
    kb: Option<&str>,
    name: Option<&str>,
) -> anyhow::Result<(StoredKey, String)> {
    let kb = match (scope, kb) {
        (Scope::Admin, _) => None,
        (_, Some(kb)) => Some(KbName::new(kb)?),
        (_, None) => anyhow::bail!("a read or write key is for one knowledge base: name it"),
    };
    if let Some(name) = name {
        anyhow::ensure!(
            name.chars().count() <= MAX_NAME_CHARS && !name.chars().any(char::is_control),
            "--name must be at most {MAX_NAME_CHARS} characters without control characters"
        );
    }
    // Random from the OS through uuid v4: 48 bits of id (12 hex digits, before the
    // version digit), 122 bits of secret.
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let salt = uuid::Uuid::new_v4().simple().to_string();
    let new_key = |id: String, salt: String| {
        let key = StoredKey {
            id: id.clone(),
            scope,
            kb: kb.clone(),
            name: name.map(String::from),
            created: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            hash: secret_hash(&salt, &secret),
            salt,
        };
        let token = format!("{PREFIX}{id}_{secret}");
        (key, token)
    };
    let fresh_id = || uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    match store {
        KeyStore::File(data_dir) => update(data_dir, |file| {
            let id = loop {
                let id = fresh_id();
                if file.keys.iter().all(|k| k.id != id) {
                    break id;
                }
            };
            let (key, token) = new_key(id, salt);
            file.keys.push(key.clone());
            Ok((key, token))
        }),
        KeyStore::Postgres(catalog) => loop {
            let (key, token) = new_key(fresh_id(), salt.clone());
            if catalog.insert_api_key(&key.id, &serde_json::to_string(&key)?)? {
                break Ok((key, token));
            }
        },
    }
}

/// The keys of `store` (hashes included; see [`StoredKey::public`]).
pub fn list_keys(store: &KeyStore) -> anyhow::Result<Vec<StoredKey>> {
    Ok(store.read()?.1)
}

/// Revokes the key `id`; a running server refuses it from its next request on.
pub fn revoke_key(store: &KeyStore, id: &str) -> anyhow::Result<()> {
    match store {
        KeyStore::File(data_dir) => update(data_dir, |file| {
            let before = file.keys.len();
            file.keys.retain(|k| k.id != id);
            anyhow::ensure!(file.keys.len() < before, "no key has id {id:?}");
            Ok(())
        }),
        KeyStore::Postgres(catalog) => {
            anyhow::ensure!(catalog.delete_api_key(id)?, "no key has id {id:?}");
            Ok(())
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Creates a key and returns it with the full key text.
    pub fn key(dir: &Path, scope: Scope, kb: Option<&str>) -> (StoredKey, String) {
        create_key(&dir.into(), scope, kb, None).unwrap()
    }

    fn header(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[test]
    fn keys_verify_by_secret_and_scope() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load(dir.path(), false).unwrap();
        assert_eq!(keys.authenticate(None).unwrap(), Principal::Open);

        let (read, token) = key(dir.path(), Scope::Read, Some("a"));
        let principal = keys.authenticate(Some(&*header(&token))).unwrap();
        assert_eq!(
            principal,
            Principal::Kb {
                id: read.id.clone(),
                kb: "a".into(),
                write: false
            }
        );
        assert!(principal.read("a").is_ok());
        assert!(matches!(
            principal.write("a"),
            Err(ServiceError::Forbidden(_))
        ));
        assert!(matches!(
            principal.read("b"),
            Err(ServiceError::NotFound(_))
        ));

        // A key is rejected with another secret, another id, or no key at all.
        let flipped = if token.ends_with('0') { '1' } else { '0' };
        let wrong = format!("{}{flipped}", &token[..token.len() - 1]);
        for bad in [wrong.as_str(), "zk_nope_secret", "zk_", "Basic abc", ""] {
            assert!(
                matches!(
                    keys.authenticate(Some(&*header(bad))),
                    Err(ServiceError::Unauthorized(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            keys.authenticate(None),
            Err(ServiceError::Unauthorized(_))
        ));
        let file = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        assert!(!file.contains(&token[token.len() - 32..]), "{file}");
    }

    #[test]
    fn revocation_is_seen_and_required_mode_stays_locked() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, token) = key(dir.path(), Scope::Admin, None);
        let keys = Keys::load(dir.path(), true).unwrap();
        assert!(keys.authenticate(Some(&*header(&token))).is_ok());
        revoke_key(&dir.path().into(), &admin.id).unwrap();
        // With keys required, no keys lock everyone out instead of opening the API.
        assert!(matches!(
            keys.authenticate(Some(&*header(&token))),
            Err(ServiceError::Unauthorized(_))
        ));
        assert!(matches!(
            keys.authenticate(None),
            Err(ServiceError::Unauthorized(_))
        ));
    }

    #[test]
    fn corrupt_key_file_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (_, token) = key(dir.path(), Scope::Admin, None);
        let keys = Keys::load(dir.path(), false).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), b"{not json").unwrap();
        assert!(matches!(
            keys.authenticate(Some(&*header(&token))),
            Err(ServiceError::Internal(_))
        ));
    }

    #[test]
    fn key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        key(dir.path(), Scope::Write, Some("a"));
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
