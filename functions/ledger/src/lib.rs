//! Ledger, a two-phase-commit participant. Deploy it under two names (say `bank-east` and
//! `bank-west`, routes `/bank-east/...` and `/bank-west/...`): each keeps its own accounts, and a
//! transfer between them commits on both or on neither.
//!
//! - Accounts are kv entries `account/<id>` = `{"balance", "holds": {tx: delta}}`, changed with
//!   compare-and-swap. `prepare` holds the change (voting abort when the balance, less what is
//!   already held, cannot cover a debit); `commit` applies the held change; `abort` drops it. All
//!   three are idempotent per transaction id, and an abort that arrives before its prepare (a
//!   recovering coordinator aborts what it never saw decided) leaves a mark that makes the late
//!   prepare vote no.
//! - Payload `{"account","delta"}`, plus `prepare_delay_ms` / `commit_delay_ms` (to let tests
//!   kill the coordinator in between).
//! - `POST /<name>/accounts/<id>/deposit?amount=N`, `GET /<name>/accounts/<id>`, and
//!   `POST /<name>/transfer` `{"from","to_function","to","amount",...}` (a debit here and a credit
//!   at `to_function`, atomically; optional `prepare_timeout_ms`, and `key`: an idempotency key,
//!   so a client whose answer was lost sends the same transfer again and gets its outcome).
//! - With the variable `LIMITS_URL` set (and its origin allowed: `--allow-outbound`), `prepare`
//!   of a debit first asks that service: it POSTs `{"tx","account","amount"}` and votes yes only
//!   on a 2xx; any other answer, a denied origin or a failure votes no, naming why (a spending
//!   limit or fraud check outside the platform, consulted before the money is held).

use faas_sdk::tx::{self, Participant, ParticipantCall, TxOptions, TxOutcome, Vote};
use faas_sdk::{IntoResponse, Request, RequestExt, StatusCode, config, http_handler, json, kv, outbound};
use serde::{Deserialize, Serialize};
use serde_json::json as j;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Default, Deserialize, Serialize)]
struct Account {
    balance: i64,
    holds: BTreeMap<String, i64>,
    /// Transactions applied, so a repeated commit changes nothing.
    applied: Vec<String>,
}

#[derive(Deserialize, Serialize)]
struct Change {
    account: String,
    delta: i64,
    #[serde(default)]
    prepare_delay_ms: u64,
    #[serde(default)]
    commit_delay_ms: u64,
}

/// Read-modify-write of one account with compare-and-swap; `change` returns the new state or an
/// error that aborts without writing.
fn update<T>(id: &str, change: impl Fn(&mut Account) -> Result<T, String>) -> Result<T, String> {
    let key = format!("account/{id}");
    loop {
        let old = kv::get(&key).map_err(|e| e.to_string())?;
        let mut account: Account = match &old {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| e.to_string())?,
            None => Account::default(),
        };
        let result = change(&mut account)?;
        let new = serde_json::to_vec(&account).map_err(|e| e.to_string())?;
        if kv::compare_and_swap(&key, old.as_deref(), Some(&new)).map_err(|e| e.to_string())? {
            return Ok(result);
        }
    }
}

fn change_of(tx_id: &str) -> Result<Option<Change>, String> {
    kv::get_json(&format!("tx/{tx_id}")).map_err(|e| e.to_string())
}

fn aborted_key(tx_id: &str) -> String {
    format!("aborted/{tx_id}")
}

struct Ledger;

impl Participant for Ledger {
    fn prepare(tx_id: String, payload: Vec<u8>) -> Vote {
        let change: Change = match serde_json::from_slice(&payload) {
            Ok(change) => change,
            Err(e) => return Vote::Abort(format!("malformed payload: {e}")),
        };
        match kv::get(&aborted_key(&tx_id)) {
            Ok(None) => {}
            Ok(Some(_)) => return Vote::Abort("already aborted".into()),
            Err(e) => return Vote::Abort(e.to_string()),
        }
        if let Err(e) = kv::set_json(&format!("tx/{tx_id}"), &change) {
            return Vote::Abort(e.to_string());
        }
        if change.delta < 0
            && let Err(reason) = check_limits(&tx_id, &change)
        {
            return Vote::Abort(reason);
        }
        let held = update(&change.account, |account| {
            if account.holds.contains_key(&tx_id) || account.applied.contains(&tx_id) {
                return Ok(());
            }
            let pending: i64 = account.holds.values().filter(|d| **d < 0).sum();
            if change.delta < 0 && account.balance + pending + change.delta < 0 {
                return Err(format!(
                    "insufficient funds in {}: balance {}, needs {}",
                    change.account,
                    account.balance + pending,
                    -change.delta
                ));
            }
            account.holds.insert(tx_id.clone(), change.delta);
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(change.prepare_delay_ms));
        match held {
            Ok(()) => Vote::Commit,
            Err(reason) => Vote::Abort(reason),
        }
    }

    fn commit(tx_id: String) -> Result<(), String> {
        let Some(change) = change_of(&tx_id)? else {
            return Ok(());
        };
        std::thread::sleep(Duration::from_millis(change.commit_delay_ms));
        update(&change.account, |account| {
            if let Some(delta) = account.holds.remove(&tx_id) {
                account.balance += delta;
                account.applied.push(tx_id.clone());
            }
            Ok(())
        })
    }

    fn abort(tx_id: String) -> Result<(), String> {
        kv::set(&aborted_key(&tx_id), b"1").map_err(|e| e.to_string())?;
        let Some(change) = change_of(&tx_id)? else {
            return Ok(());
        };
        update(&change.account, |account| {
            account.holds.remove(&tx_id);
            Ok(())
        })
    }
}

faas_sdk::export_participant!(Ledger);

/// Asks the `LIMITS_URL` service whether the debit may go ahead (nothing to ask without it).
fn check_limits(tx_id: &str, change: &Change) -> Result<(), String> {
    let Some(url) = config::get("LIMITS_URL") else { return Ok(()) };
    let body = j!({ "tx": tx_id, "account": change.account, "amount": -change.delta }).to_string().into_bytes();
    let request = http::Request::post(url.as_str())
        .header("content-type", "application/json")
        .body(body)
        .map_err(|e| format!("LIMITS_URL `{url}`: {e}"))?;
    match outbound::send(request) {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!(
            "the limits service refused the debit ({}): {}",
            response.status(),
            String::from_utf8_lossy(&response.body()[..response.body().len().min(200)])
        )),
        Err(error) => Err(format!("the limits service could not be asked: {error}")),
    }
}

#[derive(Deserialize)]
struct Transfer {
    from: String,
    to_function: String,
    to: String,
    amount: i64,
    #[serde(default)]
    prepare_delay_ms: u64,
    #[serde(default)]
    commit_delay_ms: u64,
    /// The coordinator's limit for each prepare (default 5 s).
    #[serde(default)]
    prepare_timeout_ms: Option<u64>,
    /// Idempotency key of the transaction.
    #[serde(default)]
    key: Option<String>,
}

#[http_handler]
fn serve(req: Request) -> impl IntoResponse {
    let path = req.uri().path().trim_start_matches('/').to_owned();
    let mut parts = path.split('/');
    let me = parts.next().unwrap_or_default().to_owned();
    let rest: Vec<&str> = parts.collect();
    match (req.method().as_str(), rest.as_slice()) {
        ("POST", ["accounts", id, "deposit"]) => {
            let amount: i64 = req.query_param("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
            match update(id, |account| {
                account.balance += amount;
                Ok(account.balance)
            }) {
                Ok(balance) => json(StatusCode::OK, &j!({ "account": id, "balance": balance })),
                Err(e) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": e })),
            }
        }
        ("GET", ["accounts", id]) => match kv::get_json::<Account>(&format!("account/{id}")) {
            Ok(account) => {
                let account = account.unwrap_or_default();
                json(
                    StatusCode::OK,
                    &j!({ "account": id, "balance": account.balance, "holds": account.holds, "applied": account.applied }),
                )
            }
            Err(e) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": e.to_string() })),
        },
        ("POST", ["transfer"]) => {
            let transfer: Transfer = match req.json() {
                Ok(t) => t,
                Err(e) => return json(StatusCode::BAD_REQUEST, &j!({ "error": e.to_string() })),
            };
            let call = |function: &str, account: &str, delta: i64| ParticipantCall {
                function: function.to_owned(),
                payload: j!({
                    "account": account, "delta": delta,
                    "prepare_delay_ms": transfer.prepare_delay_ms, "commit_delay_ms": transfer.commit_delay_ms,
                })
                .to_string()
                .into_bytes(),
            };
            let participants = [
                call(&me, &transfer.from, -transfer.amount),
                call(&transfer.to_function, &transfer.to, transfer.amount),
            ];
            let options = TxOptions {
                prepare_timeout: transfer.prepare_timeout_ms.map(Duration::from_millis),
                idempotency_key: transfer.key.as_deref(),
            };
            match tx::commit_with(&participants, &options) {
                Ok(result) => match result.outcome {
                    TxOutcome::Committed => json(StatusCode::OK, &j!({ "tx": result.id, "outcome": "committed" })),
                    TxOutcome::Aborted(reason) => {
                        json(StatusCode::CONFLICT, &j!({ "tx": result.id, "outcome": "aborted", "reason": reason }))
                    }
                },
                Err(e @ tx::TxError::Unavailable(_)) => {
                    json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": e.to_string() }))
                }
                Err(e @ tx::TxError::Conflict(_)) => json(StatusCode::CONFLICT, &j!({ "error": e.to_string() })),
                Err(e) => json(StatusCode::BAD_REQUEST, &j!({ "error": e.to_string() })),
            }
        }
        _ => json(
            StatusCode::NOT_FOUND,
            &j!({ "error": "try POST /<name>/accounts/<id>/deposit?amount=N, GET /<name>/accounts/<id>, POST /<name>/transfer" }),
        ),
    }
}
