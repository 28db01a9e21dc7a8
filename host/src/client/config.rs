//! `faas config get|set|unset` and the `--var`/`--secret` flags of `faas deploy`: a function's
//! variables and secrets. A secret's value can come from a file (`KEY=@path`) or from an
//! environment variable (`KEY=env:NAME`), so it need not sit in shell history.

use super::Client;
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Variables and secrets given on the command line.
#[derive(Debug, Clone, Default, Args)]
pub struct ValueArgs {
    /// A variable the function reads through `wasi:config/store`: `KEY=VALUE`. Repeatable.
    #[arg(long = "var", value_parser = parse_pair)]
    pub vars: Vec<(String, String)>,
    /// A secret: `KEY=VALUE`, `KEY=@file` (the file's contents) or `KEY=env:NAME` (that
    /// environment variable). Sealed at rest, never shown again. Repeatable.
    #[arg(long = "secret", value_parser = parse_secret)]
    pub secrets: Vec<(String, String)>,
}

impl ValueArgs {
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty() && self.secrets.is_empty()
    }

    /// The JSON the API takes (the deploy's `values` part, the body of `PATCH …/config`).
    pub fn to_json(&self, unset: &[String]) -> Value {
        let map = |pairs: &[(String, String)]| pairs.iter().cloned().collect::<BTreeMap<_, _>>();
        json!({ "variables": map(&self.vars), "secrets": map(&self.secrets), "unset": unset })
    }
}

/// `faas config …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Show the active version's variables (with values) and secrets (names only).
    Get { name: String },
    /// Set variables (`KEY=VALUE …`) and secrets (`--secret`) without a redeploy: one new config
    /// version, live for the next invocation.
    Set {
        name: String,
        #[arg(value_parser = parse_pair)]
        pairs: Vec<(String, String)>,
        #[arg(long = "secret", value_parser = parse_secret)]
        secrets: Vec<(String, String)>,
    },
    /// Remove variables or secrets: one new config version.
    Unset {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

impl Client {
    pub async fn config(&self, command: ConfigCommand) -> anyhow::Result<Value> {
        let (name, body) = match command {
            ConfigCommand::Get { name } => {
                return self.send(self.http.get(self.url(&format!("/v1/functions/{name}/config")))).await;
            }
            ConfigCommand::Set { name, pairs, secrets } => {
                if pairs.is_empty() && secrets.is_empty() {
                    bail!("nothing to set: give KEY=VALUE pairs or --secret KEY=VALUE");
                }
                (name, ValueArgs { vars: pairs, secrets }.to_json(&[]))
            }
            ConfigCommand::Unset { name, keys } => (name, ValueArgs::default().to_json(&keys)),
        };
        self.send(self.http.patch(self.url(&format!("/v1/functions/{name}/config"))).json(&body)).await
    }
}

/// `KEY=VALUE` (the value may contain `=`).
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("`{text}` has no key"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// `KEY=VALUE`, `KEY=@file` or `KEY=env:NAME`. A literal value starting with `@` or `env:`
/// goes through a file.
pub fn parse_secret(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        // Never echo what may be a secret.
        return Err("expected KEY=VALUE, KEY=@file or KEY=env:NAME".into());
    };
    if key.is_empty() {
        return Err("the secret has no key".into());
    }
    let value = resolve_secret(value).map_err(|e| format!("secret `{key}`: {e:#}"))?;
    Ok((key.to_owned(), value))
}

fn resolve_secret(value: &str) -> anyhow::Result<String> {
    if let Some(path) = value.strip_prefix('@') {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        // A file written by an editor or `echo` ends with a newline that is not part of the value.
        Ok(text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_owned())
    } else if let Some(name) = value.strip_prefix("env:") {
        std::env::var(name).with_context(|| format!("environment variable {name}"))
    } else {
        Ok(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_secret_sources() {
        assert_eq!(parse_pair("A=b=c").expect("ok"), ("A".into(), "b=c".into()));
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("=x").is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").expect("write");
        assert_eq!(parse_secret(&format!("T=@{}", file.display())).expect("ok").1, "from-file");
        // SAFETY: this test alone reads this variable.
        unsafe { std::env::set_var("FAAS_TEST_SECRET_SOURCE", "from-env") };
        assert_eq!(parse_secret("T=env:FAAS_TEST_SECRET_SOURCE").expect("ok").1, "from-env");
        assert!(parse_secret("T=env:FAAS_TEST_SECRET_UNSET_123").is_err());
        let error = parse_secret("hunter2").expect_err("no key");
        assert!(!error.contains("hunter2"));
    }
}
