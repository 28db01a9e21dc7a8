//! Two-phase commit: [`commit_atomically`] (`faas:platform/tx`) across participant functions,
//! and the [`Participant`] trait those functions implement (exported with
//! [`export_participant!`](crate::export_participant)).
//!
//! Atomic, but blocking: a participant that voted commit holds what it prepared until the
//! decision reaches it, and if the coordinating host dies after the votes it stays held until the
//! host recovers. Prefer [sagas](crate::saga) unless the changes must become visible together.
//!
//! ```no_run
//! use faas_sdk::tx::{self, ParticipantCall, TxOutcome};
//!
//! # fn main() -> Result<(), tx::TxError> {
//! let debit = ParticipantCall { function: "bank-east".into(), payload: br#"{"account":"alice","delta":-50}"#.to_vec() };
//! let credit = ParticipantCall { function: "bank-west".into(), payload: br#"{"account":"bob","delta":50}"#.to_vec() };
//! match tx::commit_atomically(&[debit, credit], None)?.outcome {
//!     TxOutcome::Committed => println!("moved"),
//!     TxOutcome::Aborted(reason) => println!("nothing moved: {reason}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A participant (every call may be repeated, so each is idempotent per transaction id):
//!
//! ```no_run
//! use faas_sdk::tx::{Participant, Vote};
//!
//! struct Ledger;
//!
//! impl Participant for Ledger {
//!     fn prepare(tx_id: String, payload: Vec<u8>) -> Vote {
//!         Vote::Commit // after checking and holding what the change needs
//!     }
//!     fn commit(tx_id: String) -> Result<(), String> {
//!         Ok(()) // apply what prepare held
//!     }
//!     fn abort(tx_id: String) -> Result<(), String> {
//!         Ok(()) // release it (also for a transaction never prepared)
//!     }
//! }
//!
//! faas_sdk::export_participant!(Ledger);
//! # fn main() {}
//! ```

use std::fmt;
use std::time::Duration;

use crate::bindings::faas::platform::tx as wit;

pub use crate::bindings::participant::exports::faas::platform::participant::{Guest as Participant, Vote};
pub use wit::{ParticipantCall, TxOutcome, TxResult};

/// Prepares every participant (each within `prepare_timeout`, default 5 s), records the decision,
/// then commits or aborts them all. The outcome is final once returned.
///
/// # Errors
///
/// See [`TxError`]. A participant voting no is not an error: the outcome is
/// [`TxOutcome::Aborted`].
pub fn commit_atomically(
    participants: &[ParticipantCall],
    prepare_timeout: Option<Duration>,
) -> Result<TxResult, TxError> {
    commit_with(participants, &TxOptions { prepare_timeout, idempotency_key: None })
}

/// How [`commit_with`] runs a transaction.
#[derive(Clone, Debug, Default)]
pub struct TxOptions<'a> {
    /// Each participant's limit to prepare (default 5 s, at most 60 s).
    pub prepare_timeout: Option<Duration>,
    /// The same key (1-200 bytes) in this function's namespace is the same transaction: asking
    /// again (say, after a lost response) returns its recorded outcome instead of running it
    /// twice. Its id is a UUIDv5 of the namespace and the key; `GET /v1/transactions?key=…`
    /// finds it.
    pub idempotency_key: Option<&'a str>,
}

/// [`commit_atomically`] with [`TxOptions`], e.g. an idempotency key:
///
/// ```no_run
/// use faas_sdk::tx::{self, ParticipantCall, TxOptions};
///
/// # fn main() -> Result<(), tx::TxError> {
/// # let participants: Vec<ParticipantCall> = Vec::new();
/// let options = TxOptions { idempotency_key: Some("transfer-42"), ..TxOptions::default() };
/// let result = tx::commit_with(&participants, &options)?; // again: the same transaction
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// See [`TxError`].
pub fn commit_with(participants: &[ParticipantCall], options: &TxOptions<'_>) -> Result<TxResult, TxError> {
    #[cfg(target_arch = "wasm32")]
    {
        let options = wit::TxOptions {
            prepare_timeout_ms: options.prepare_timeout.map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
            idempotency_key: options.idempotency_key.map(str::to_owned),
        };
        Ok(wit::commit_atomically(participants, &options)?)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (participants, options);
        Err(TxError::Unavailable("transactions run on the faas host, not in native tests".into()))
    }
}

/// Why a transaction could not run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxError {
    /// Malformed participants, or a function that is not deployed or exports no `participant`.
    InvalidRequest(String),
    /// The idempotency key already names a transaction with other participants.
    Conflict(String),
    /// The coordinator's log failed (nothing was decided), or the transaction with this key is
    /// still being prepared elsewhere: ask again with the same key.
    Unavailable(String),
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(m) => write!(f, "invalid transaction: {m}"),
            Self::Conflict(m) => write!(f, "transaction conflict: {m}"),
            Self::Unavailable(m) => write!(f, "transaction coordinator unavailable: {m}"),
        }
    }
}

impl std::error::Error for TxError {}

impl From<wit::TxError> for TxError {
    fn from(error: wit::TxError) -> Self {
        match error {
            wit::TxError::InvalidRequest(m) => Self::InvalidRequest(m),
            wit::TxError::Conflict(m) => Self::Conflict(m),
            wit::TxError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}

/// Exports a [`Participant`] implementation as the component's `faas:platform/participant`.
#[macro_export]
macro_rules! export_participant {
    ($participant:ident) => {
        $crate::__private::export_participant_function!(
            $participant with_types_in $crate::__private::participant_bindings
        );
    };
}
