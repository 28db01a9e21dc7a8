//! `faas logs <function> [-f] [--since 10m] [--version N] [--request-id ID]`: a function's guest
//! output, invocation records and host warnings, one line each; `-f` follows the server-sent
//! event stream of `GET /v1/functions/{name}/logs?follow=true` until interrupted.

use super::Client;
use anyhow::Context as _;
use clap::Args;
use futures::StreamExt as _;
use serde_json::Value;
use std::io::Write as _;

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    pub function: String,
    /// Keep printing new records as they happen.
    #[arg(short, long)]
    pub follow: bool,
    /// Only records of the last <duration> (e.g. 90s, 10m, 2h).
    #[arg(long)]
    pub since: Option<String>,
    /// Only records of this version.
    #[arg(long)]
    pub version: Option<u32>,
    /// Only records of this request (its `x-request-id`).
    #[arg(long)]
    pub request_id: Option<String>,
    /// At most this many of the kept records (the newest); 1-1000.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Print each record as its JSON instead.
    #[arg(long)]
    pub json: bool,
}

impl Client {
    pub async fn logs(&self, args: &LogsArgs) -> anyhow::Result<()> {
        let mut request =
            self.http.get(self.url(&format!("/v1/functions/{}/logs", args.function))).query(&[("limit", args.limit)]);
        for (key, value) in [("since", &args.since), ("request_id", &args.request_id)] {
            if let Some(value) = value {
                request = request.query(&[(key, value)]);
            }
        }
        if let Some(version) = args.version {
            request = request.query(&[("version", version)]);
        }
        let print = |record: &Value| {
            let line = if args.json { record.to_string() } else { format_record(record) };
            // A closed pipe (`faas logs f | head`) ends the output, not with a panic.
            writeln!(std::io::stdout(), "{line}").is_ok()
        };
        if !args.follow {
            let body = self.send(request).await?;
            for record in body["logs"].as_array().into_iter().flatten() {
                if !print(record) {
                    break;
                }
            }
            return Ok(());
        }
        let response = self.send_raw(request.query(&[("follow", "true")])).await?;
        let mut body = response.bytes_stream();
        let mut reader = crate::model::sse::SseReader::default();
        while let Some(chunk) = body.next().await {
            for event in reader.push(&chunk.context("the log stream broke off")?) {
                match event.event.as_deref() {
                    Some("log") => {
                        let record: Value = serde_json::from_str(&event.data).unwrap_or(Value::String(event.data));
                        if !print(&record) {
                            return Ok(());
                        }
                    }
                    Some("lagged") => eprintln!("(fell behind: {} records not shown)", event.data),
                    Some("unreachable") => eprintln!("(a node's records are missing: {})", event.data),
                    _ => {}
                }
            }
        }
        anyhow::bail!("the server closed the log stream")
    }
}

/// `2026-12-03T16:04:05.123Z v2 stdout  [req] text`, or for an invocation its status and time.
fn format_record(record: &Value) -> String {
    let at = record["at_ms"]
        .as_i64()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(String::new, |t| format!("{t:.3}"));
    let version = record["version"].as_u64().map_or_else(String::new, |v| format!("v{v}"));
    let request = record["request_id"].as_str().map_or_else(String::new, |id| format!("[{id}] "));
    let kind = record["kind"].as_str().unwrap_or("?");
    let text = match kind {
        "invocation" => format!(
            "{} {} in {:.1} ms",
            record["trigger"].as_str().unwrap_or("invoked"),
            record["status"],
            record["duration_ms"].as_f64().unwrap_or_default()
        ),
        _ => record["line"].as_str().unwrap_or_default().to_owned(),
    };
    format!("{at} {version} {kind:<10} {request}{text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_print_on_one_line() {
        let line = json!({ "at_ms": 0, "version": 2, "request_id": "r1", "kind": "stdout", "line": "hi" });
        assert_eq!(format_record(&line), "1970-01-01T00:00:00.000Z v2 stdout     [r1] hi");
        let invocation = json!({ "at_ms": 0, "version": 2, "request_id": "r1", "kind": "invocation",
            "status": 200, "duration_ms": 1.34, "trigger": "http" });
        assert!(format_record(&invocation).ends_with("[r1] http 200 in 1.3 ms"), "{}", format_record(&invocation));
    }
}
