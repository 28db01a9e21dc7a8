//! A function's variables and secrets: [`Registry::set_config`] (a new config version for the
//! active function version, live at once, no redeploy), [`Registry::config`] (what the API
//! shows: variable values, secret names) and the sealing and opening of secrets.
//!
//! Every change is a new immutable config version, and each function version records the config
//! version it runs with: a deploy records the active version's (or a new one, with `--var` or
//! `--secret`), a `config set` moves the active version to the new one, and so a rollback to a
//! version restores the config that version last ran with.

use super::{Registry, RegistryError};
use crate::model::secrets::{self, SecretKey};
use crate::model::variables::{ConfigChange, StoredConfig};
use crate::runtime::state::FunctionConfig;
use crate::store::StoreError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How often a config change is recomputed after losing a race with a change on another node.
const MAX_CONFIG_RETRIES: u32 = 16;

/// A function's config as the API shows it: never a secret's value.
#[derive(Debug, Serialize)]
pub struct ConfigView {
    pub function: String,
    pub active_version: Option<u32>,
    /// None before any variable or secret was set.
    pub config_version: Option<u32>,
    pub variables: BTreeMap<String, String>,
    /// Names only.
    pub secrets: Vec<String>,
}

impl Registry {
    /// The active version's variables and secret names.
    pub async fn config(&self, name: &str) -> Result<ConfigView, RegistryError> {
        let function = self.function(name).await?;
        let active = function.active();
        let config_version = active.and_then(|v| v.config_version);
        let stored = self.stored_config(name, config_version).await?;
        Ok(ConfigView {
            function: name.to_owned(),
            active_version: active.map(|v| v.version),
            config_version,
            variables: stored.variables,
            secrets: stored.secrets.into_keys().collect(),
        })
    }

    /// Applies `change` to the active version's config as a new config version, atomically, and
    /// swaps it in: the next invocation sees it, running ones keep the values they started with.
    pub async fn set_config(&self, name: &str, change: ConfigChange) -> Result<ConfigView, RegistryError> {
        if change.is_empty() {
            return Err(RegistryError::InvalidConfig(
                "nothing to change: give variables, secrets or keys to unset".into(),
            ));
        }
        let mut active = self.active.lock().await;
        self.function(name).await?;
        // The lock above orders changes made through this node; one through another node may
        // land between the read and the write, so the write is a compare-and-set, redone on
        // the new state when it loses (a change to other keys then keeps both).
        let mut attempt = 0;
        loop {
            let (based_on, next) = self.changed_config(name, &change).await?;
            match self.store.set_config(name, based_on, &next).await {
                Ok(_) => break,
                Err(StoreError::Moved(why)) if attempt < MAX_CONFIG_RETRIES => {
                    attempt += 1;
                    tracing::debug!(function = name, attempt, "{why}; applying the change again");
                }
                Err(error) => return Err(error.into()),
            }
        }
        let function = self.function(name).await?;
        let version = function.active().ok_or_else(|| StoreError::FunctionNotFound(name.to_owned()))?;
        let loaded = self.load(name, version).await?;
        let config_version = loaded.config.version;
        active.insert(name.to_owned(), loaded);
        self.publish(&active);
        tracing::info!(function = name, version = version.version, config_version, "config changed");
        drop(active);
        self.config(name).await
    }

    /// The active version's config version and its stored config with `change` applied
    /// (secrets sealed).
    pub(super) async fn changed_config(
        &self,
        name: &str,
        change: &ConfigChange,
    ) -> Result<(Option<u32>, StoredConfig), RegistryError> {
        let current = self.store.function(name).await?.and_then(|f| f.active().and_then(|v| v.config_version));
        let base = self.stored_config(name, current).await?;
        let key = &self.secret_key;
        let next = base
            .apply(change, |k, v| key.seal(&secrets::context(name, k), v.as_bytes()), secrets::sealed_len)
            .map_err(RegistryError::InvalidConfig)?;
        Ok((current, next))
    }

    async fn stored_config(&self, name: &str, version: Option<u32>) -> Result<StoredConfig, RegistryError> {
        Ok(match version {
            Some(version) => self.store.config(name, version).await?,
            None => StoredConfig::default(),
        })
    }

    /// Config version `config_version` (or `stored`, if the caller has it) with its secrets
    /// opened, for function version `version`.
    pub(super) async fn open_config(
        &self,
        name: &str,
        version: u32,
        config_version: Option<u32>,
        stored: Option<&StoredConfig>,
    ) -> Result<Arc<FunctionConfig>, RegistryError> {
        let loaded;
        let stored = match stored {
            Some(stored) => stored,
            None => {
                loaded = self.stored_config(name, config_version).await?;
                &loaded
            }
        };
        let secrets = open_secrets(&self.secret_key, name, stored).map_err(|message| RegistryError::Load {
            function: name.to_owned(),
            version,
            message,
        })?;
        let variables = stored.variables.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(Arc::new(FunctionConfig::new(config_version, variables, secrets)))
    }
}

fn open_secrets(key: &SecretKey, name: &str, stored: &StoredConfig) -> Result<Vec<(String, String)>, String> {
    stored
        .secrets
        .iter()
        .map(|(k, sealed)| {
            let plain = key.open(&secrets::context(name, k), sealed).map_err(|e| format!("secret `{k}`: {e}"))?;
            let plain = String::from_utf8(plain).map_err(|_| format!("secret `{k}` is not UTF-8"))?;
            Ok((k.clone(), plain))
        })
        .collect()
}
