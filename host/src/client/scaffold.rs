//! `faas new <template> <name>`: writes a ready-to-build function crate from one of the
//! templates in `host/templates/`, which ship inside the binary. A template is a few files with
//! `{{name}}`, `{{crate}}`, `{{sdk_version}}` and `{{sdk_path}}` placeholders, and the
//! `faas deploy` arguments that deploy what it builds (see `host/templates/README.md`).

use anyhow::{Context as _, bail};
use clap::Args;
use std::path::{Path, PathBuf};

/// `faas new` arguments.
#[derive(Debug, Clone, Args)]
pub struct NewArgs {
    /// The template (`faas new --list` shows them).
    #[arg(required_unless_present = "list")]
    pub template: Option<String>,
    /// The function's name (lowercase letters, digits, dashes): the crate's and the deploy's.
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// Where to write the crate (default: ./<name>); must not exist or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The guest SDK (`faas-sdk`) to build against: the `guest-sdk` directory of a faas
    /// checkout. Default: `FAAS_SDK_PATH`, else the one this binary was built from.
    #[arg(long, env = "FAAS_SDK_PATH")]
    pub sdk_path: Option<PathBuf>,
    /// List the templates.
    #[arg(long)]
    pub list: bool,
}

pub struct Template {
    pub name: &'static str,
    pub summary: &'static str,
    /// (path in the crate, contents)
    files: [(&'static str, &'static str); 3],
    /// What follows `faas deploy <name> <file.wasm>`.
    deploy_args: &'static str,
}

macro_rules! template {
    ($name:literal, $summary:literal) => {
        Template {
            name: $name,
            summary: $summary,
            files: [
                ("Cargo.toml", include_str!(concat!("../../templates/", $name, "/Cargo.toml.tmpl"))),
                ("src/lib.rs", include_str!(concat!("../../templates/", $name, "/src/lib.rs"))),
                ("README.md", include_str!(concat!("../../templates/", $name, "/README.md"))),
            ],
            deploy_args: include_str!(concat!("../../templates/", $name, "/deploy.args")),
        }
    };
}

pub static TEMPLATES: &[Template] = &[
    template!("http", "HTTP handler: routes, JSON in and out, a clear 400 on bad input"),
    template!("kafka", "Kafka consumer: records into the event store, an HTTP route to read them"),
    template!("projection", "CQRS: commands append events, a subscription projects them into kv, queries read it"),
    template!("saga-step", "Saga step with its compensation, idempotent per saga"),
    template!("participant", "Two-phase-commit participant: prepare, commit, abort"),
    template!("scheduled", "Scheduled job (cron) that records its runs"),
];

/// The SDK version this binary's templates are written for.
fn sdk_version() -> &'static str {
    manifest_version(include_str!("../../../guest-sdk/Cargo.toml")).expect("guest-sdk/Cargo.toml has a version")
}

fn manifest_version(manifest: &str) -> Option<&str> {
    manifest.lines().find_map(|line| line.strip_prefix("version = \"")?.strip_suffix('"'))
}

/// The template list, one per line.
pub fn list() -> String {
    TEMPLATES.iter().map(|t| format!("{:<12} {}\n", t.name, t.summary)).collect()
}

/// Writes the crate; returns what to do next.
pub fn create(args: &NewArgs) -> anyhow::Result<String> {
    let (Some(template), Some(name)) = (args.template.as_deref(), args.name.as_deref()) else {
        bail!("give a template and a name: faas new <template> <name> (templates: faas new --list)");
    };
    let template = TEMPLATES.iter().find(|t| t.name == template).with_context(|| {
        let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
        format!("no template `{template}`; there are: {}", names.join(", "))
    })?;
    crate::model::names::validate_name(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sdk = sdk_path(args.sdk_path.as_deref())?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!("{} exists and is not empty: choose another --dir", dir.display());
    }
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk_version}}", sdk_version())
            .replace("{{sdk_path}}", &sdk.display().to_string())
    };
    for (path, contents) in template.files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the crate"))
            .with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&path, fill(contents)).with_context(|| format!("writing {}", path.display()))?;
    }
    let deploy = format!(
        "faas deploy {name} target/wasm32-wasip2/release/{crate_name}.wasm {}",
        fill(template.deploy_args.trim())
    );
    Ok(format!(
        "created {} ({} template)\n\n  cd {}\n  cargo build --release --target wasm32-wasip2\n  {deploy}\n",
        dir.display(),
        template.name,
        dir.display()
    ))
}

/// The SDK directory to build against, checked to be the version the templates are written for.
fn sdk_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let built_from = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk"));
    let path = match given {
        Some(path) => path.to_owned(),
        None if built_from.join("Cargo.toml").is_file() => built_from.to_owned(),
        None => bail!(
            "where is the guest SDK? pass --sdk-path <dir> (or set FAAS_SDK_PATH): the `guest-sdk` directory of a faas checkout"
        ),
    };
    let manifest = std::fs::read_to_string(path.join("Cargo.toml"))
        .with_context(|| format!("{} is not the guest SDK: no Cargo.toml", path.display()))?;
    if !manifest.contains("name = \"faas-sdk\"") {
        bail!("{} is not the guest SDK (its Cargo.toml is not faas-sdk's)", path.display());
    }
    let version = manifest_version(&manifest).unwrap_or("?");
    if version != sdk_version() {
        bail!(
            "the SDK at {} is version {version}; this faas writes templates for {}: use a matching checkout",
            path.display(),
            sdk_version()
        );
    }
    path.canonicalize().with_context(|| format!("resolving {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_fills_every_placeholder() {
        for template in TEMPLATES {
            let deploy = ("deploy.args", template.deploy_args);
            for (path, contents) in template.files.into_iter().chain([deploy]) {
                let filled = contents
                    .replace("{{name}}", "n")
                    .replace("{{crate}}", "n")
                    .replace("{{sdk_version}}", "0")
                    .replace("{{sdk_path}}", "/");
                assert!(!filled.contains("{{"), "{}/{path} has an unknown placeholder", template.name);
            }
        }
    }

    #[test]
    fn the_sdk_version_is_read_from_its_manifest() {
        assert_eq!(manifest_version("[package]\nname = \"x\"\nversion = \"1.2.3\"\n"), Some("1.2.3"));
        assert!(!sdk_version().is_empty());
    }
}
