//! `{{name}}`: a two-phase-commit participant that reserves stock.
//!
//! - Each item is a kv entry `item/<sku>` = `{"on_hand","holds":{tx: qty},"applied":[tx]}`,
//!   changed with compare-and-swap.
//! - `prepare(tx, {"sku","qty"})` holds the quantity, or votes abort when what is on hand, less
//!   what other transactions hold, cannot cover it. `commit` takes what was held; `abort` drops
//!   the hold. The coordinator repeats each call until it is acknowledged, so all three are
//!   idempotent per transaction id; an abort that arrives before its prepare (a recovering
//!   coordinator aborts what it never decided) leaves a mark that makes the late prepare vote no.
//! - `POST /{{name}}/items/<sku>/restock` `{"qty"}` and `GET /{{name}}/items/<sku>`.
//! - `POST /{{name}}/reserve` `{"sku","qty"}` runs a transaction with this function as its only
//!   participant. A real one lists several (this stock and a payment ledger's debit, say): all
//!   of them commit, or none.

use std::collections::BTreeMap;

use faas_sdk::tx::{self, Participant, ParticipantCall, TxOutcome, Vote};
use faas_sdk::{Request, RequestExt, Response, StatusCode, http_handler, json, kv};
use serde::{Deserialize, Serialize};
use serde_json::json as j;

/// The name this function is deployed under: the coordinator calls it by name.
const FUNCTION: &str = "{{name}}";

#[derive(Default, Deserialize, Serialize)]
struct Item {
    on_hand: u64,
    holds: BTreeMap<String, u64>,
    /// Transactions committed, so a repeated commit or a late prepare changes nothing. (A long-
    /// lived participant would prune it, e.g. keep the last few thousand.)
    applied: Vec<String>,
}

#[derive(Deserialize, Serialize)]
struct Reservation {
    sku: String,
    qty: u64,
}

/// Read-modify-write of one item with compare-and-swap, retried when another call changed it
/// meanwhile; `change` may refuse, and then nothing is written.
fn update<T>(sku: &str, change: impl Fn(&mut Item) -> Result<T, String>) -> Result<T, String> {
    let key = format!("item/{sku}");
    loop {
        let old = kv::get(&key).map_err(|e| e.to_string())?;
        let mut item: Item = match &old {
            Some(bytes) => kv::from_json(&key, bytes).map_err(|e| e.to_string())?,
            None => Item::default(),
        };
        let result = change(&mut item)?;
        let new = kv::to_json(&key, &item).map_err(|e| e.to_string())?;
        if kv::compare_and_swap(&key, old.as_deref(), Some(&new)).map_err(|e| e.to_string())? {
            return Ok(result);
        }
    }
}

/// What `prepare` was asked to hold for transaction `tx_id`.
fn reservation_of(tx_id: &str) -> Result<Option<Reservation>, String> {
    kv::get_json(&format!("tx/{tx_id}")).map_err(|e| e.to_string())
}

/// `prepare`'s work: `Err` is the reason to vote abort.
fn hold(tx_id: &str, payload: &[u8]) -> Result<(), String> {
    let reservation: Reservation =
        serde_json::from_slice(payload).map_err(|e| format!("bad payload: {e}"))?;
    if kv::get(&format!("aborted/{tx_id}"))
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err("already aborted".to_owned());
    }
    // Recorded first, so that commit and abort know what to apply or release.
    kv::set_json(&format!("tx/{tx_id}"), &reservation).map_err(|e| e.to_string())?;
    update(&reservation.sku, |item| {
        if item.holds.contains_key(tx_id) || item.applied.iter().any(|t| t == tx_id) {
            return Ok(()); // A repeated prepare.
        }
        let free = item.on_hand.saturating_sub(item.holds.values().sum());
        if reservation.qty == 0 || reservation.qty > free {
            return Err(format!(
                "cannot reserve {} of {}: {free} free",
                reservation.qty, reservation.sku
            ));
        }
        item.holds.insert(tx_id.to_owned(), reservation.qty);
        Ok(())
    })
}

struct Stock;

impl Participant for Stock {
    fn prepare(tx_id: String, payload: Vec<u8>) -> Vote {
        match hold(&tx_id, &payload) {
            Ok(()) => Vote::Commit,
            Err(reason) => Vote::Abort(reason),
        }
    }

    fn commit(tx_id: String) -> Result<(), String> {
        let Some(reservation) = reservation_of(&tx_id)? else {
            return Ok(());
        };
        update(&reservation.sku, |item| {
            if let Some(qty) = item.holds.remove(&tx_id) {
                item.on_hand = item.on_hand.saturating_sub(qty);
                item.applied.push(tx_id.clone());
            }
            Ok(())
        })
    }

    fn abort(tx_id: String) -> Result<(), String> {
        kv::set(&format!("aborted/{tx_id}"), b"1").map_err(|e| e.to_string())?;
        let Some(reservation) = reservation_of(&tx_id)? else {
            return Ok(());
        };
        update(&reservation.sku, |item| {
            item.holds.remove(&tx_id);
            Ok(())
        })
    }
}

faas_sdk::export_participant!(Stock);

#[http_handler]
fn serve(req: Request) -> Response {
    match (req.method().as_str(), route(&req).as_slice()) {
        ("POST", ["items", sku, "restock"]) => restock(sku, &req),
        ("GET", ["items", sku]) => show(sku),
        ("POST", ["reserve"]) => reserve(&req),
        _ => error(
            StatusCode::NOT_FOUND,
            "try .../items/<sku>/restock, .../items/<sku>, .../reserve",
        ),
    }
}

/// The path below the route prefix, as segments: `/{{name}}/items/a` → `["items", "a"]`.
/// (The host passes the whole path; matching below its first segment keeps the code
/// independent of the prefix it is deployed under.)
fn route(req: &Request) -> Vec<&str> {
    req.uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .skip(1)
        .collect()
}

#[derive(Deserialize)]
struct Restock {
    qty: u64,
}

fn restock(sku: &str, req: &Request) -> Response {
    let qty = match req.json::<Restock>() {
        Ok(Restock { qty }) => qty,
        Err(err) => return error(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let restocked = update(sku, |item| {
        item.on_hand = item.on_hand.saturating_add(qty);
        Ok(())
    });
    match restocked {
        Ok(()) => show(sku),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, &err),
    }
}

/// `{"sku","on_hand","held"}`; an item never restocked has nothing on hand.
fn show(sku: &str) -> Response {
    match kv::get_json::<Item>(&format!("item/{sku}")) {
        Ok(item) => {
            let item = item.unwrap_or_default();
            let held: u64 = item.holds.values().sum();
            json(
                StatusCode::OK,
                &j!({ "sku": sku, "on_hand": item.on_hand, "held": held }),
            )
        }
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    }
}

/// Runs the transaction: 200 committed, 409 aborted (with the reason a participant voted no).
fn reserve(req: &Request) -> Response {
    // Checked here too, so a malformed request is a 400 rather than a transaction voted down.
    if let Err(err) = req.json::<Reservation>() {
        return error(StatusCode::BAD_REQUEST, &err.to_string());
    }
    let payload = req.bytes().to_vec();
    let call = ParticipantCall {
        function: FUNCTION.to_owned(),
        payload,
    };
    match tx::commit_atomically(&[call], None) {
        Ok(result) => match result.outcome {
            TxOutcome::Committed => json(
                StatusCode::OK,
                &j!({ "tx": result.id, "outcome": "committed" }),
            ),
            TxOutcome::Aborted(reason) => {
                let body = j!({ "tx": result.id, "outcome": "aborted", "reason": reason });
                json(StatusCode::CONFLICT, &body)
            }
        },
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &j!({ "error": message }))
}
