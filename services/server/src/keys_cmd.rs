//! `zhiku keys`: API keys from the command line, in the key file of the data directory or
//! the PostgreSQL catalog (`[catalog]`).

use zhiku_app::auth::{KeyStore, Scope, StoredKey, create_key, list_keys, revoke_key};

/// `zhiku keys ...`.
#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once on stdout (its id and scope go to stderr). Only a
    /// salted hash is stored: a lost key cannot be shown again, only revoked.
    Create(CreateArgs),
    /// List the keys: id, scope, knowledge base, created, name (never the secret).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id; a running server refuses it from its next request on.
    Revoke {
        /// The key's id (the part after `zk_`, as `keys list` shows it).
        id: String,
    },
}

/// The scope of a knowledge-base key.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KbScope {
    /// Search, ask, list and read documents.
    Read,
    /// Read, plus upload, delete, import and reindex.
    Write,
}

/// `zhiku keys create`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["admin", "kb"])))]
pub struct CreateArgs {
    /// A key for everything, on every knowledge base.
    #[arg(long, conflicts_with_all = ["kb", "scope"])]
    admin: bool,
    /// The knowledge base the key is for (it need not exist yet).
    #[arg(long, requires = "scope")]
    kb: Option<String>,
    /// What the key may do on its knowledge base.
    #[arg(long, value_enum, requires = "kb")]
    scope: Option<KbScope>,
    /// A label, e.g. who holds the key.
    #[arg(long)]
    name: Option<String>,
}

/// Runs a `zhiku keys` command on the keys of `store`.
pub fn run(store: &KeyStore, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create(args) => {
            let scope = match (args.admin, args.scope) {
                (true, _) => Scope::Admin,
                (false, Some(KbScope::Read)) => Scope::Read,
                (false, Some(KbScope::Write)) => Scope::Write,
                (false, None) => {
                    anyhow::bail!("give --admin, or --kb NAME with --scope read|write")
                }
            };
            let (key, token) = create_key(store, scope, args.kb.as_deref(), args.name.as_deref())?;
            let target = key
                .kb
                .as_deref()
                .map(|kb| format!(" on knowledge base {kb:?}"))
                .unwrap_or_default();
            eprintln!(
                "created {} key {}{target}; it is shown only this once:",
                key.scope, key.id
            );
            println!("{token}");
        }
        KeysCommand::List { json } => {
            let keys = list_keys(store)?;
            if json {
                let rows: Vec<_> = keys.iter().map(StoredKey::public).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if keys.is_empty() {
                eprintln!("no keys: the API is open (on loopback only)");
            } else {
                println!(
                    "{:<12}  {:<6}  {:<20}  {:<20}  name",
                    "id", "scope", "kb", "created"
                );
                for k in &keys {
                    println!(
                        "{:<12}  {:<6}  {:<20}  {:<20}  {}",
                        k.id,
                        k.scope,
                        k.kb.as_deref().unwrap_or("*"),
                        k.created,
                        k.name.as_deref().unwrap_or("")
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            revoke_key(store, &id)?;
            eprintln!("revoked key {id}");
        }
    }
    Ok(())
}
