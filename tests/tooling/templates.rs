//! `faas new`: every template writes a crate that builds for wasm32-wasip2 (with cargo, as a
//! user would) and deploys with the command `faas new` prints, then answers its own checks
//! (`host/templates/<t>/check.json`) on a real server. And the mistakes a user makes get a clear
//! error and write nothing.

use crate::support::kafka::{broker, create_topic, produce, serve_args};
use crate::support::{FAAS, Options, Server, eventually};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TEMPLATES: [&str; 6] = ["http", "kafka", "projection", "saga-step", "participant", "scheduled"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

fn faas_new(args: &[&str]) -> std::process::Output {
    Command::new(FAAS).arg("new").args(args).env_remove("FAAS_SDK_PATH").output().expect("running faas new")
}

#[test]
fn templates_are_listed_and_mistakes_are_refused_clearly() {
    let listed = faas_new(&["--list"]);
    assert!(listed.status.success());
    let listed = String::from_utf8(listed.stdout).unwrap();
    for template in TEMPLATES {
        assert!(listed.lines().any(|l| l.starts_with(template)), "{template} missing from:\n{listed}");
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x");
    let target = target.to_str().unwrap();
    for (args, says) in [
        (vec!["nope", "my-fn", "--dir", target], "no template `nope`; there are: http, kafka"),
        (vec!["http", "My_Fn", "--dir", target], "My_Fn"),
        (vec!["http", "my-fn", "--dir", target, "--sdk-path", "/nonexistent"], "is not the guest SDK"),
        (vec!["http"], "required"),
    ] {
        let out = faas_new(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!Path::new(target).exists(), "{args:?} wrote something");
    }
    // An existing, non-empty directory is never written into.
    std::fs::create_dir_all(Path::new(target)).unwrap();
    std::fs::write(Path::new(target).join("keep.txt"), "mine").unwrap();
    let out = faas_new(&["http", "my-fn", "--dir", target]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists and is not empty"));
    assert_eq!(std::fs::read_dir(target).unwrap().count(), 1);
}

#[tokio::test]
async fn every_template_builds_deploys_and_works() {
    let work = tempfile::tempdir().unwrap();
    // With a broker, for the kafka template (a server without one refuses a Kafka trigger).
    let bootstrap = &broker().bootstrap;
    let mut extra_args = serve_args(bootstrap);
    extra_args.extend(["--tiered-compilation".into(), "false".into()]);
    let server = Server::start_with(Options { extra_args, ..Default::default() }).await;
    // Unique per run: the broker (and so the kafka template's topic) is shared by the run.
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    for template in TEMPLATES {
        let name = format!("t-{template}-{run}");
        let dir = work.path().join(&name);
        let out = faas_new(&[template, &name, "--dir", dir.to_str().unwrap()]);
        assert!(out.status.success(), "faas new {template}: {}", String::from_utf8_lossy(&out.stderr));
        let printed = String::from_utf8(out.stdout).unwrap();
        let deploy_line = printed.lines().map(str::trim).find(|l| l.starts_with("faas deploy ")).unwrap().to_owned();
        assert!(
            std::fs::read_to_string(dir.join("README.md")).unwrap().contains(&deploy_line),
            "README: {deploy_line}"
        );

        let wasm = build(&dir, &name);
        let checks = checks(template);
        if checks["produce"].is_array() {
            // Before the deploy, so the trigger finds its topic at once.
            create_topic(bootstrap, &name, 1).await;
        }
        // The printed command, run from the crate (its path to the .wasm is relative).
        let words = shell_words(deploy_line.strip_prefix("faas ").unwrap());
        let out = Command::new(FAAS)
            .args(&words)
            .current_dir(&dir)
            .env("FAAS_ADMIN_URL", &server.admin)
            .env_remove("FAAS_ADMIN_TOKEN")
            .output()
            .unwrap();
        assert!(out.status.success(), "{deploy_line}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(wasm.is_file());
        run_checks(&server, template, &checks, &name, bootstrap).await;
    }
}

/// Builds the crate as its README says, sharing the suite's guest target dir and lock file
/// (the same dependency versions as functions/, so only the crate itself compiles).
fn build(dir: &Path, name: &str) -> PathBuf {
    let repo = repo();
    std::fs::copy(repo.join("functions/Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let target = repo.join("target/wasm");
    // Niced to the lowest priority and on one job: the suite's other tests run beside this one,
    // several with timeouts, and six release (LTO) builds would starve them of both cores.
    let out = Command::new("nice")
        .args(["-n", "19", "cargo", "build", "-j", "1", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target)
        .current_dir(dir)
        // Built as a user would build it, not through the suite's clippy wrapper.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .output()
        .expect("running cargo");
    assert!(out.status.success(), "building {name}:\n{}", String::from_utf8_lossy(&out.stderr));
    let warnings = String::from_utf8_lossy(&out.stderr).matches("warning:").count();
    assert_eq!(warnings, 0, "{name} builds with warnings:\n{}", String::from_utf8_lossy(&out.stderr));
    // Where the crate's own build would have put it, as the printed deploy command expects.
    std::os::unix::fs::symlink(&target, dir.join("target")).unwrap();
    target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")))
}

fn checks(template: &str) -> Value {
    let path = repo().join("host/templates").join(template).join("check.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The template's own checks: Kafka records to produce first, then requests to the data plane
/// and what they must answer.
async fn run_checks(server: &Server, template: &str, checks: &Value, name: &str, bootstrap: &str) {
    if let Some(records) = checks["produce"].as_array() {
        let records = records
            .iter()
            .map(|r| (r["key"].as_str().unwrap().to_owned(), r["value"].as_str().unwrap().as_bytes().to_vec()))
            .collect();
        produce(bootstrap, name, records).await;
    }
    for check in checks["requests"].as_array().unwrap() {
        let method = reqwest::Method::from_bytes(check["method"].as_str().unwrap().as_bytes()).unwrap();
        let url = format!("{}{}", server.data, check["path"].as_str().unwrap().replace("{{name}}", name));
        let status = check["status"].as_u64().unwrap() as u16;
        let contains = check["contains"].as_str().unwrap_or_default().replace("{{name}}", name);
        let body = check["body"].as_str().map(str::to_owned);
        let patience = if check["eventually"] == true { Duration::from_secs(20) } else { Duration::ZERO };
        eventually(&format!("{template}: {method} {url} -> {status} with {contains:?}"), patience, async || {
            let mut request = server.http.request(method.clone(), &url);
            if let Some(body) = &body {
                request = request.header("content-type", "application/json").body(body.clone());
            }
            let response = request.send().await.map_err(|e| e.to_string())?;
            let got = response.status().as_u16();
            let text = response.text().await.map_err(|e| e.to_string())?;
            if got == status && text.contains(&contains) { Ok(()) } else { Err(format!("{got} {text}")) }
        })
        .await;
    }
}

/// Splits a command line the way a POSIX shell would for the quoting the templates use.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => (quote, in_word) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}
