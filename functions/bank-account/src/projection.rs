//! The read model, kept by the `#[event_handler]` from the `account-*` subscription.
//!
//! kv keys (the function's own namespace):
//!
//! - `account/{id}`: the [`Account`] as JSON:
//!   `{"id","owner","balance","version","position","transactions","updated_at"}`.
//! - `tx/{id}/{version:020}`: one [`Transaction`] per deposit or withdrawal,
//!   `{"type","amount","version","position","recorded_at"}`; the zero-padded version makes key
//!   order the stream's order.
//!
//! Delivery is at least once and in global order. An event whose version is at or below the
//! stored account's version was applied before and is skipped. An event beyond the next
//! expected version (its predecessors were parked, say) first makes the projection read the
//! missing events from the stream, so the record never skips one. Per batch and account, the
//! transactions are written first and the account record last, with a compare-and-swap against
//! the value read at the start: a concurrent writer makes the batch fail and be retried rather
//! than lose an update. Events of other streams and unknown types change no balance.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use faas_sdk::event_store::{self, Direction, RecordedEvent};
use faas_sdk::kv;

use crate::domain::{Account, Transaction, account_id_of};

/// How many missing events one catch-up read asks for.
const CATCH_UP_PAGE: u64 = 1000;

/// The kv key of account `id`'s record.
pub fn account_key(id: &str) -> String {
    format!("account/{id}")
}

/// The kv key of account `id`'s transaction at `version`.
pub fn tx_key(id: &str, version: u64) -> String {
    format!("tx/{id}/{version:020}")
}

/// The kv prefix of account `id`'s transactions.
pub fn tx_prefix(id: &str) -> String {
    format!("tx/{id}/")
}

/// An account touched by the batch being projected.
struct Pending {
    /// The record as read at the start, for the compare-and-swap.
    stored: Option<Vec<u8>>,
    account: Account,
    /// Transactions to write, in order.
    transactions: Vec<Transaction>,
    /// Whether any event was applied.
    changed: bool,
}

/// Projects a batch of events into kv.
///
/// # Errors
///
/// A message for the host, which retries the batch: a store failure, a concurrent update of an
/// account record, or events missing from a stream.
pub fn project(events: &[RecordedEvent]) -> Result<(), String> {
    let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
    for event in events {
        let Some(id) = account_id_of(event) else { continue };
        let entry = match pending.entry(id.to_owned()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(load(id)?),
        };
        let next = entry.account.next_version();
        if event.version < next {
            continue; // Seen before: at-least-once delivery.
        }
        if event.version > next {
            catch_up(entry, event)?;
        }
        apply(entry, event);
    }
    for (id, entry) in &pending {
        if entry.changed {
            save(id, entry)?;
        }
    }
    Ok(())
}

/// Reads account `id`'s record, or starts a new one.
fn load(id: &str) -> Result<Pending, String> {
    let key = account_key(id);
    let stored = kv::get(&key).map_err(|err| err.to_string())?;
    let account = match &stored {
        Some(bytes) => kv::from_json(&key, bytes).map_err(|err| err.to_string())?,
        None => Account::new(id),
    };
    Ok(Pending { stored, account, transactions: Vec::new(), changed: false })
}

fn apply(entry: &mut Pending, event: &RecordedEvent) {
    if let Some(transaction) = entry.account.apply(event) {
        entry.transactions.push(transaction);
    }
    entry.changed = true;
}

/// Applies the events of `event`'s stream between the account's next version and `event`.
fn catch_up(entry: &mut Pending, event: &RecordedEvent) -> Result<(), String> {
    while entry.account.next_version() < event.version {
        let from = entry.account.next_version();
        let count = u32::try_from((event.version - from).min(CATCH_UP_PAGE)).unwrap_or(u32::MAX);
        let page = event_store::read_stream(&event.stream, from, Direction::Forward, count)
            .map_err(|err| format!("catching up on {}: {err}", event.stream))?;
        let before = entry.account.next_version();
        for missing in page {
            if missing.version == entry.account.next_version() && missing.version < event.version {
                apply(entry, &missing);
            }
        }
        if entry.account.next_version() == before {
            return Err(format!(
                "{} has no events {from}..{} before version {}; retrying",
                event.stream, event.version, event.version
            ));
        }
    }
    Ok(())
}

/// Writes the batch's transactions, then the account record if nobody changed it meanwhile.
fn save(id: &str, entry: &Pending) -> Result<(), String> {
    for transaction in &entry.transactions {
        kv::set_json(&tx_key(id, transaction.version), transaction).map_err(|err| err.to_string())?;
    }
    let key = account_key(id);
    let record = kv::to_json(&key, &entry.account).map_err(|err| err.to_string())?;
    let swapped = kv::compare_and_swap(&key, entry.stored.as_deref(), Some(&record)).map_err(|err| err.to_string())?;
    if swapped { Ok(()) } else { Err(format!("{key} changed while this batch was projected; retrying")) }
}

#[cfg(test)]
mod tests {
    use faas_sdk::event_store::{ExpectedVersion, NewEvent};
    use faas_sdk::testing;

    use super::*;
    use crate::domain::{AccountEvent, Amount, Opened};

    fn append(id: &str, event: AccountEvent) -> RecordedEvent {
        let stream = crate::domain::stream_of(id);
        let outcome =
            event_store::append(&stream, ExpectedVersion::Any, vec![event.to_new_event(event_store::new_id())])
                .expect("appends");
        event_store::read_stream(&stream, outcome.last_version, Direction::Forward, 1)
            .expect("reads")
            .pop()
            .expect("just appended")
    }

    fn deposit(id: &str, amount: u64) -> RecordedEvent {
        append(id, AccountEvent::Deposited(Amount { amount }))
    }

    fn open(id: &str) -> RecordedEvent {
        append(id, AccountEvent::Opened(Opened { owner: format!("owner of {id}") }))
    }

    fn stored(id: &str) -> Option<Account> {
        kv::get_json(&account_key(id)).expect("reads kv")
    }

    fn transactions(id: &str) -> Vec<Transaction> {
        kv::list_all(&tx_prefix(id))
            .expect("lists")
            .into_iter()
            .map(|(key, value)| kv::from_json(&key, &value).expect("a transaction"))
            .collect()
    }

    #[test]
    fn projects_balances_and_transactions() {
        testing::reset();
        testing::set_clock(Some(5_000));
        let events =
            vec![open("a"), deposit("a", 500), open("b"), append("a", AccountEvent::Withdrawn(Amount { amount: 120 }))];
        project(&events).expect("projects");

        let a = stored("a").expect("projected");
        assert_eq!(
            a,
            Account {
                id: "a".into(),
                owner: Some("owner of a".into()),
                balance: 380,
                version: Some(2),
                position: 4,
                transactions: 2,
                updated_at: 5_000,
            }
        );
        assert_eq!(
            serde_json::to_value(&a).expect("serializes"),
            serde_json::json!({
                "id": "a", "owner": "owner of a", "balance": 380, "version": 2, "position": 4,
                "transactions": 2, "updated_at": 5000,
            })
        );
        let txs = transactions("a");
        assert_eq!(txs.len(), 2);
        assert_eq!((txs[0].kind.as_str(), txs[0].amount, txs[0].version, txs[0].position), ("Deposited", 500, 1, 2));
        assert_eq!((txs[1].kind.as_str(), txs[1].amount, txs[1].version, txs[1].position), ("Withdrawn", 120, 2, 4));
        assert!(kv::get(&tx_key("a", 1)).expect("reads").is_some());
        assert_eq!(tx_key("a", 1), "tx/a/00000000000000000001");
        let b = stored("b").expect("projected");
        assert_eq!((b.balance, b.version, b.transactions), (0, Some(0), 0));
    }

    #[test]
    fn redelivery_is_harmless() {
        testing::reset();
        let first = vec![open("a"), deposit("a", 100)];
        project(&first).expect("projects");
        let second = vec![deposit("a", 10)];
        project(&second).expect("projects");
        // The host delivers everything again, in order, and then the last batch once more.
        let everything: Vec<RecordedEvent> = first.iter().chain(&second).cloned().collect();
        project(&everything).expect("projects");
        project(&second).expect("projects");
        let a = stored("a").expect("projected");
        assert_eq!((a.balance, a.version, a.transactions), (110, Some(2), 2));
        assert_eq!(transactions("a").len(), 2);
    }

    #[test]
    fn catches_up_on_missing_events() {
        testing::reset();
        let opened = open("a");
        let _skipped = [deposit("a", 100), deposit("a", 20)];
        let last = deposit("a", 3);
        project(&[opened]).expect("projects");
        // Versions 1 and 2 were never delivered (parked, say): the projection reads them.
        project(&[last]).expect("projects");
        let a = stored("a").expect("projected");
        assert_eq!((a.balance, a.version, a.transactions), (123, Some(3), 3));
        assert_eq!(transactions("a").iter().map(|t| t.version).collect::<Vec<_>>(), [1, 2, 3]);

        // Also from nothing: the first event delivered is not the stream's first.
        let _b = [open("b"), deposit("b", 7)];
        let b_last = deposit("b", 8);
        project(&[b_last]).expect("projects");
        let b = stored("b").expect("projected");
        assert_eq!((b.owner.as_deref(), b.balance, b.version), (Some("owner of b"), 15, Some(2)));
    }

    #[test]
    fn a_gap_that_cannot_be_filled_is_retried() {
        testing::reset();
        // An event claiming version 5 of a stream that has fewer events.
        let fake = RecordedEvent { stream: "account-z".into(), version: 5, ..open("z") };
        let err = project(&[fake]).expect_err("cannot catch up");
        assert!(err.contains("account-z has no events 1..5"), "{err}");
        assert_eq!(stored("z"), None);
    }

    #[test]
    fn concurrent_updates_fail_the_batch() {
        testing::reset();
        let opened = open("a");
        let deposited = deposit("a", 5);
        project(&[opened]).expect("projects");
        // Someone else rewrites the record between this batch's read and write: simulate by
        // loading, changing the record, then saving.
        let mut entry = load("a").expect("loads");
        apply(&mut entry, &deposited);
        kv::set("account/a", b"{}").expect("sets");
        let err = save("a", &entry).expect_err("the swap fails");
        assert!(err.contains("account/a changed"), "{err}");
    }

    #[test]
    fn ignores_other_streams_and_types() {
        testing::reset();
        let other =
            event_store::append("orders-1", ExpectedVersion::Any, vec![NewEvent::new("Placed", b"{}".to_vec())])
                .expect("appends");
        assert_eq!(other.last_position, 1);
        let opened = open("a");
        let unknown =
            event_store::append("account-a", ExpectedVersion::Any, vec![NewEvent::new("Frozen", b"{}".to_vec())])
                .expect("appends");
        let all = event_store::read_all(1, 100).expect("reads");
        let foreign = RecordedEvent { stream: "bank/account-a".into(), ..opened.clone() };
        project(&[all.clone(), vec![foreign]].concat()).expect("projects");
        assert_eq!(kv::list_all("").expect("lists").len(), 1, "only account/a");
        let a = stored("a").expect("projected");
        assert_eq!((a.balance, a.version), (0, Some(unknown.last_version)));
    }
}
