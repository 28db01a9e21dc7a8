//! The domain, free of I/O: the events of an account, the state they fold into, and the
//! decisions commands take on that state.
//!
//! Both sides use the same fold: the command side replays a stream into an [`Account`] to
//! decide, the projection applies delivered events to the stored [`Account`] one by one.

use faas_sdk::event_store::{NewEvent, RecordedEvent};
use serde::{Deserialize, Serialize};

/// Event type of [`AccountEvent::Opened`].
pub const ACCOUNT_OPENED: &str = "AccountOpened";
/// Event type of [`AccountEvent::Deposited`].
pub const DEPOSITED: &str = "Deposited";
/// Event type of [`AccountEvent::Withdrawn`].
pub const WITHDRAWN: &str = "Withdrawn";

/// The prefix of every account stream: `account-{id}`.
pub const STREAM_PREFIX: &str = "account-";

/// The longest account id; the stream name (`account-{id}`) stays far below the 200 allowed.
pub const MAX_ID_LEN: usize = 64;

/// The stream of account `id`.
pub fn stream_of(id: &str) -> String {
    format!("{STREAM_PREFIX}{id}")
}

/// Whether `id` is a valid account id: 1-64 ASCII letters, digits and `-_.:@`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
}

/// The account id of an event, if it belongs to an account stream of this function's own
/// namespace (`account-{id}`; streams of other namespaces read as `ns/account-{id}`).
pub fn account_id_of(event: &RecordedEvent) -> Option<&str> {
    let id = event.stream.strip_prefix(STREAM_PREFIX)?;
    is_valid_id(id).then_some(id)
}

/// `AccountOpened` data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    /// Who owns the account.
    pub owner: String,
}

/// `Deposited` and `Withdrawn` data: an amount of cents, always positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// Cents.
    pub amount: u64,
}

/// The events of an account stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountEvent {
    /// `AccountOpened {owner}`: the first event of every account.
    Opened(Opened),
    /// `Deposited {amount}`.
    Deposited(Amount),
    /// `Withdrawn {amount}`.
    Withdrawn(Amount),
}

impl AccountEvent {
    /// The event type stored with the event.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Opened(_) => ACCOUNT_OPENED,
            Self::Deposited(_) => DEPOSITED,
            Self::Withdrawn(_) => WITHDRAWN,
        }
    }

    /// The event's JSON data.
    pub fn data(&self) -> Vec<u8> {
        let data = match self {
            Self::Opened(opened) => serde_json::to_vec(opened),
            Self::Deposited(amount) | Self::Withdrawn(amount) => serde_json::to_vec(amount),
        };
        // Plain structs of strings and integers always serialize.
        data.unwrap_or_default()
    }

    /// The event to append, with id `id`. The content is a pure function of the event (no
    /// timestamps, no random metadata), so appending it again with the same id is a duplicate
    /// rather than an idempotency conflict.
    pub fn to_new_event(&self, id: String) -> NewEvent {
        NewEvent::new(self.event_type(), self.data()).with_id(id)
    }

    /// Parses a recorded event: `Ok(None)` for a type this domain does not know.
    ///
    /// # Errors
    ///
    /// If a known type's data is not the expected JSON.
    pub fn parse(event: &RecordedEvent) -> Result<Option<Self>, serde_json::Error> {
        Ok(Some(match event.event_type.as_str() {
            ACCOUNT_OPENED => Self::Opened(event.json()?),
            DEPOSITED => Self::Deposited(event.json()?),
            WITHDRAWN => Self::Withdrawn(event.json()?),
            _ => return Ok(None),
        }))
    }

    /// Whether a recorded event holds exactly this event (type and data).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        matches!(Self::parse(event), Ok(Some(parsed)) if parsed == *self)
    }
}

/// One money movement, as the projection stores it under `tx/{id}/{version:020}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The event type: `Deposited` or `Withdrawn`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Cents.
    pub amount: u64,
    /// The event's version in the account stream.
    pub version: u64,
    /// The event's global position.
    pub position: u64,
    /// When the event was recorded, in milliseconds since the Unix epoch.
    pub recorded_at: u64,
}

/// An account as its events make it: the command side's state and the projection's record
/// (`account/{id}` in kv).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account id.
    pub id: String,
    /// From `AccountOpened`.
    pub owner: Option<String>,
    /// Cents.
    pub balance: u64,
    /// Version of the last event applied; `None` before any.
    pub version: Option<u64>,
    /// Position of the last event applied.
    pub position: u64,
    /// Deposits and withdrawals applied.
    pub transactions: u64,
    /// `recorded_at` of the last event applied.
    pub updated_at: u64,
}

impl Account {
    /// An account with no events yet.
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into(), ..Self::default() }
    }

    /// Folds `events` (one stream's, in order) into an account.
    pub fn replay<'a>(id: &str, events: impl IntoIterator<Item = &'a RecordedEvent>) -> Self {
        let mut account = Self::new(id);
        for event in events {
            account.apply(event);
        }
        account
    }

    /// Whether the stream has any event.
    pub fn exists(&self) -> bool {
        self.version.is_some()
    }

    /// The version the next event of the stream will have.
    pub fn next_version(&self) -> u64 {
        self.version.map_or(0, |version| version + 1)
    }

    /// Applies one event of the account's stream and returns the transaction it records, if it
    /// is a deposit or withdrawal.
    ///
    /// Every event advances the version and position, including types this domain does not
    /// know and malformed ones (which are reported on stderr and otherwise ignored): the version
    /// must stay the stream's, for optimistic concurrency and for the projection's bookkeeping.
    pub fn apply(&mut self, event: &RecordedEvent) -> Option<Transaction> {
        self.version = Some(event.version);
        self.position = event.position;
        self.updated_at = event.recorded_at;
        let parsed = match AccountEvent::parse(event) {
            Ok(parsed) => parsed?,
            Err(err) => {
                eprintln!(
                    "bank-account: ignoring malformed {} event {} in {}: {err}",
                    event.event_type, event.id, event.stream
                );
                return None;
            }
        };
        let amount = match parsed {
            AccountEvent::Opened(Opened { owner }) => {
                self.owner = Some(owner);
                return None;
            }
            AccountEvent::Deposited(Amount { amount }) => {
                self.balance = self.balance.saturating_add(amount);
                amount
            }
            AccountEvent::Withdrawn(Amount { amount }) => {
                self.balance = self.balance.saturating_sub(amount);
                amount
            }
        };
        self.transactions += 1;
        Some(Transaction {
            kind: event.event_type.clone(),
            amount,
            version: event.version,
            position: event.position,
            recorded_at: event.recorded_at,
        })
    }
}

/// What a client asks of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Open it for `owner`.
    Open {
        /// Who owns it.
        owner: String,
    },
    /// Put `amount` cents in.
    Deposit {
        /// Cents, positive.
        amount: u64,
    },
    /// Take `amount` cents out.
    Withdraw {
        /// Cents, positive.
        amount: u64,
    },
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// `Open` on an account that has events.
    AlreadyExists,
    /// `Deposit`/`Withdraw` on an account with no events.
    NotFound,
    /// An amount of 0.
    InvalidAmount,
    /// A withdrawal beyond the balance.
    InsufficientFunds {
        /// The balance, in cents.
        balance: u64,
    },
    /// A deposit the balance cannot hold.
    Overflow,
}

/// Decides what `command` does to `account`: the one event to append, or why not.
///
/// # Errors
///
/// The [`Rejection`].
pub fn decide(account: &Account, command: &Command) -> Result<AccountEvent, Rejection> {
    match command {
        Command::Open { .. } if account.exists() => Err(Rejection::AlreadyExists),
        Command::Open { owner } => Ok(AccountEvent::Opened(Opened { owner: owner.clone() })),
        Command::Deposit { .. } | Command::Withdraw { .. } if !account.exists() => Err(Rejection::NotFound),
        Command::Deposit { amount: 0 } | Command::Withdraw { amount: 0 } => Err(Rejection::InvalidAmount),
        Command::Deposit { amount } => match account.balance.checked_add(*amount) {
            Some(_) => Ok(AccountEvent::Deposited(Amount { amount: *amount })),
            None => Err(Rejection::Overflow),
        },
        Command::Withdraw { amount } if *amount > account.balance => {
            Err(Rejection::InsufficientFunds { balance: account.balance })
        }
        Command::Withdraw { amount } => Ok(AccountEvent::Withdrawn(Amount { amount: *amount })),
    }
}

/// The account as of a point in the past: folds the events with `version <= as_of_version` and
/// `recorded_at <= as_of` (each when given). Returns it with the number of events folded.
pub fn replay_as_of(
    id: &str,
    events: &[RecordedEvent],
    as_of_version: Option<u64>,
    as_of: Option<u64>,
) -> (Account, usize) {
    let selected: Vec<&RecordedEvent> = events
        .iter()
        .take_while(|event| as_of_version.is_none_or(|max| event.version <= max))
        .take_while(|event| as_of.is_none_or(|max| event.recorded_at <= max))
        .collect();
    (Account::replay(id, selected.iter().copied()), selected.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded event of `account-a` at `version`, recorded at `1000 * (version + 1)`.
    pub(crate) fn recorded(version: u64, event: &AccountEvent) -> RecordedEvent {
        RecordedEvent {
            id: format!("e{version}"),
            stream: "account-a".into(),
            version,
            position: version * 10 + 1,
            event_type: event.event_type().into(),
            data: event.data(),
            recorded_at: 1000 * (version + 1),
            ..RecordedEvent::default()
        }
    }

    fn history() -> Vec<RecordedEvent> {
        [
            AccountEvent::Opened(Opened { owner: "ann".into() }),
            AccountEvent::Deposited(Amount { amount: 500 }),
            AccountEvent::Withdrawn(Amount { amount: 200 }),
            AccountEvent::Deposited(Amount { amount: 50 }),
        ]
        .iter()
        .enumerate()
        .map(|(version, event)| recorded(version as u64, event))
        .collect()
    }

    #[test]
    fn events_serialize_as_documented() {
        let opened = AccountEvent::Opened(Opened { owner: "ann".into() });
        assert_eq!(opened.event_type(), "AccountOpened");
        assert_eq!(opened.data(), br#"{"owner":"ann"}"#);
        assert_eq!(AccountEvent::Deposited(Amount { amount: 5 }).data(), br#"{"amount":5}"#);
        assert_eq!(AccountEvent::Withdrawn(Amount { amount: 5 }).event_type(), "Withdrawn");
        let new = opened.to_new_event("id-1".into());
        assert_eq!((new.id.as_str(), new.event_type.as_str()), ("id-1", "AccountOpened"));
        assert_eq!(new.metadata, Default::default());
    }

    #[test]
    fn parse_and_match() {
        let event = recorded(1, &AccountEvent::Deposited(Amount { amount: 7 }));
        assert_eq!(AccountEvent::parse(&event).expect("parses"), Some(AccountEvent::Deposited(Amount { amount: 7 })));
        assert!(AccountEvent::Deposited(Amount { amount: 7 }).matches(&event));
        assert!(!AccountEvent::Deposited(Amount { amount: 8 }).matches(&event));
        assert!(!AccountEvent::Withdrawn(Amount { amount: 7 }).matches(&event));
        let unknown = RecordedEvent { event_type: "Frozen".into(), ..event.clone() };
        assert_eq!(AccountEvent::parse(&unknown).expect("parses"), None);
        let malformed = RecordedEvent { data: b"{}".to_vec(), ..event };
        assert!(AccountEvent::parse(&malformed).is_err());
    }

    #[test]
    fn fold() {
        let account = Account::replay("a", &history());
        assert_eq!(
            account,
            Account {
                id: "a".into(),
                owner: Some("ann".into()),
                balance: 350,
                version: Some(3),
                position: 31,
                transactions: 3,
                updated_at: 4000,
            }
        );
        assert!(account.exists());
        assert_eq!(account.next_version(), 4);
        let empty = Account::replay("b", &[]);
        assert!(!empty.exists());
        assert_eq!(empty.next_version(), 0);
    }

    #[test]
    fn apply_returns_transactions() {
        let mut account = Account::new("a");
        let events = history();
        assert_eq!(account.apply(&events[0]), None);
        assert_eq!(
            account.apply(&events[1]),
            Some(Transaction { kind: "Deposited".into(), amount: 500, version: 1, position: 11, recorded_at: 2000 })
        );
        let tx = account.apply(&events[2]).expect("a withdrawal");
        assert_eq!((tx.kind.as_str(), tx.amount), ("Withdrawn", 200));
        assert_eq!(
            serde_json::to_value(&tx).expect("serializes"),
            serde_json::json!({"type": "Withdrawn", "amount": 200, "version": 2, "position": 21, "recorded_at": 3000})
        );
    }

    #[test]
    fn unknown_and_malformed_events_only_advance_the_version() {
        let mut events = history();
        events.push(RecordedEvent {
            event_type: "Audited".into(),
            data: b"{}".to_vec(),
            ..recorded(4, &AccountEvent::Deposited(Amount { amount: 1 }))
        });
        events.push(RecordedEvent {
            data: b"not json".to_vec(),
            ..recorded(5, &AccountEvent::Deposited(Amount { amount: 1 }))
        });
        let account = Account::replay("a", &events);
        assert_eq!((account.balance, account.version, account.transactions), (350, Some(5), 3));
    }

    #[test]
    fn decisions() {
        let none = Account::new("a");
        let open = Account::replay("a", &history());
        let owner = "ann".to_owned();
        assert_eq!(
            decide(&none, &Command::Open { owner: owner.clone() }),
            Ok(AccountEvent::Opened(Opened { owner: owner.clone() }))
        );
        assert_eq!(decide(&open, &Command::Open { owner }), Err(Rejection::AlreadyExists));
        assert_eq!(decide(&none, &Command::Deposit { amount: 1 }), Err(Rejection::NotFound));
        assert_eq!(decide(&none, &Command::Withdraw { amount: 1 }), Err(Rejection::NotFound));
        assert_eq!(decide(&open, &Command::Deposit { amount: 0 }), Err(Rejection::InvalidAmount));
        assert_eq!(decide(&open, &Command::Withdraw { amount: 0 }), Err(Rejection::InvalidAmount));
        assert_eq!(decide(&open, &Command::Deposit { amount: 9 }), Ok(AccountEvent::Deposited(Amount { amount: 9 })));
        assert_eq!(
            decide(&open, &Command::Withdraw { amount: 350 }),
            Ok(AccountEvent::Withdrawn(Amount { amount: 350 }))
        );
        assert_eq!(
            decide(&open, &Command::Withdraw { amount: 351 }),
            Err(Rejection::InsufficientFunds { balance: 350 })
        );
        assert_eq!(decide(&open, &Command::Deposit { amount: u64::MAX }), Err(Rejection::Overflow));
    }

    #[test]
    fn time_travel() {
        let events = history();
        let (account, count) = replay_as_of("a", &events, None, None);
        assert_eq!((account.balance, account.version, count), (350, Some(3), 4));
        let (account, count) = replay_as_of("a", &events, Some(1), None);
        assert_eq!((account.balance, account.version, count), (500, Some(1), 2));
        let (account, count) = replay_as_of("a", &events, None, Some(3000));
        assert_eq!((account.balance, account.version, count), (300, Some(2), 3));
        let (account, count) = replay_as_of("a", &events, Some(1), Some(3000));
        assert_eq!((account.balance, account.version, count), (500, Some(1), 2));
        let (account, count) = replay_as_of("a", &events, None, Some(999));
        assert_eq!((account.exists(), count), (false, 0));
    }

    #[test]
    fn ids_and_streams() {
        assert!(is_valid_id("42"));
        assert!(is_valid_id("alice@bank:eu.1_x-y"));
        assert!(is_valid_id(&"a".repeat(64)));
        for bad in ["", "a b", "a/b", "ü", &"a".repeat(65)] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
        assert_eq!(stream_of("42"), "account-42");
        let event = |stream: &str| RecordedEvent { stream: stream.into(), ..RecordedEvent::default() };
        assert_eq!(account_id_of(&event("account-42")), Some("42"));
        assert_eq!(account_id_of(&event("other/account-42")), None);
        assert_eq!(account_id_of(&event("accounts-42")), None);
        assert_eq!(account_id_of(&event("account-")), None);
    }
}
