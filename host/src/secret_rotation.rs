//! `faas rotate-secret-key`: seals every stored secret (every config version of every function,
//! so rollbacks keep working) under a new master key, in one transaction, and makes the new key
//! the database's. Run it with every node stopped: a running node would go on sealing new
//! secrets with the old key.

use crate::model::secrets::{self, KeySource, SecretKey};
use crate::store;
use anyhow::{Context as _, bail};
use std::io::Write as _;
use std::path::PathBuf;

/// `faas rotate-secret-key` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RotateArgs {
    /// The data dir (for the default SQLite database and the key file).
    #[arg(long, env = "FAAS_DATA_DIR", default_value = "./.faas")]
    pub data_dir: PathBuf,
    #[arg(long, env = "FAAS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The current key; default: the data dir's key file.
    #[arg(long, env = "FAAS_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// The new key (base64 or hex, 32 bytes); default: a new random one, written to the key
    /// file (only when the current key came from it).
    #[arg(long, env = "FAAS_NEW_SECRET_KEY", hide_env_values = true)]
    pub new_secret_key: Option<String>,
}

/// Reseals everything; returns what to tell the operator.
pub async fn rotate(args: RotateArgs) -> anyhow::Result<String> {
    let url = args.database_url.clone().unwrap_or_else(|| store::default_url(&args.data_dir));
    let stores = store::open(&url).await.context("opening the database")?;
    let (old, source) = SecretKey::load(args.secret_key.as_deref(), &args.data_dir)?;
    if let KeySource::Created(path) = source {
        std::fs::remove_file(&path).ok();
        bail!("no current key: set FAAS_SECRET_KEY or run this where the data dir's secret.key is");
    }
    let token = stores.functions.secret_key_check(&old.check_token()).await?;
    old.verify(&token)?;
    let (new_text, generated) = match &args.new_secret_key {
        Some(text) => (text.clone(), false),
        None => (SecretKey::generate(), true),
    };
    let new = SecretKey::parse(&new_text)?;
    if generated && !matches!(source, KeySource::File(_)) {
        bail!("give the new key with --new-secret-key (or FAAS_NEW_SECRET_KEY): the current one is not in a key file");
    }
    let reseal = |function: &str, mut config: crate::model::variables::StoredConfig| {
        for (key, sealed) in config.secrets.iter_mut() {
            let context = secrets::context(function, key);
            let plain = old.open(&context, sealed).map_err(|e| format!("{function}/{key}: {e}"))?;
            *sealed = new.seal(&context, &plain);
        }
        Ok(config)
    };
    let count = stores.functions.reseal_configs(&reseal, &new.check_token()).await?;
    match source {
        KeySource::File(path) => {
            let tmp = path.with_extension("key.new");
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
            file.write_all(format!("{new_text}\n").as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
            Ok(format!("resealed {count} config versions; {} now holds the new key", path.display()))
        }
        _ => Ok(format!("resealed {count} config versions; start every node with the new FAAS_SECRET_KEY")),
    }
}
