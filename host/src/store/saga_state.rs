//! A saga's state as the fold of its journal, and the one thing to do next. Pure: the runner
//! (`workflows::sagas`) writes an entry, folds it in, and asks again, so a saga recovered after a crash
//! continues exactly where its journal stops.

use crate::store::workflows::{JournalEntry, JournalRecord, SagaDefinition, SagaStatus};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, async_graphql::Enum)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Compensating,
    Compensated,
    Skipped,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StepState {
    /// Action attempts started (a retry after a crash reuses its attempt's number).
    pub attempts: u32,
    pub compensation_attempts: u32,
    /// Compensation attempts since the saga last (re)entered compensation: what `stuck` counts.
    #[serde(skip)]
    pub compensation_attempts_window: u32,
    pub last_error: Option<String>,
    #[serde(skip)]
    pub output: Option<Vec<u8>>,
    pub succeeded: bool,
    /// The step said no: no effect, nothing to compensate.
    pub refused: bool,
    pub compensated: bool,
    pub skipped: bool,
    /// An attempt was journaled and its outcome never was (the host died meanwhile).
    #[serde(skip)]
    pub attempt_open: bool,
    #[serde(skip)]
    pub compensation_open: bool,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub compensated_at_ms: Option<i64>,
}

impl StepState {
    /// Whether the action may have had an effect that must be undone.
    pub fn needs_compensation(&self) -> bool {
        self.attempts > 0 && !self.refused && !self.compensated && !self.skipped
    }

    pub fn status(&self, saga: SagaStatus) -> StepStatus {
        if self.skipped {
            StepStatus::Skipped
        } else if self.compensated {
            StepStatus::Compensated
        } else if self.compensation_attempts > 0 {
            StepStatus::Compensating
        } else if self.succeeded {
            StepStatus::Succeeded
        } else if self.refused || (self.attempts > 0 && saga != SagaStatus::Running) {
            StepStatus::Failed
        } else if self.attempts > 0 {
            StepStatus::Running
        } else {
            StepStatus::Pending
        }
    }
}

#[derive(Debug, Clone)]
pub struct SagaState {
    pub status: SagaStatus,
    pub error: Option<String>,
    /// Why the saga compensates: the failure that turned it around (kept through stuck and
    /// resume, and written again with `compensated`).
    pub cause: Option<String>,
    pub steps: Vec<StepState>,
    /// The `seq` of the next journal entry.
    pub next_seq: u64,
}

/// What the runner does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Action {
        step: usize,
        attempt: u32,
    },
    Compensation {
        step: usize,
        attempt: u32,
    },
    /// Write this status (and error): completed, compensating, compensated or stuck.
    SetStatus(SagaStatus, Option<String>),
    /// Nothing until an operator acts (stuck), or ever (final).
    Idle,
}

impl SagaState {
    pub fn new(definition: &SagaDefinition) -> Self {
        Self {
            status: SagaStatus::Running,
            error: None,
            cause: None,
            steps: vec![StepState::default(); definition.steps.len()],
            next_seq: 0,
        }
    }

    pub fn fold(definition: &SagaDefinition, journal: &[JournalRecord]) -> Self {
        let mut state = Self::new(definition);
        for record in journal {
            state.apply(record);
        }
        state
    }

    pub fn apply(&mut self, record: &JournalRecord) {
        self.next_seq = self.next_seq.max(record.seq + 1);
        let at = record.at_ms;
        let Some(step) = record.entry.step().and_then(|i| self.steps.get_mut(i)) else {
            if let JournalEntry::Status { status, error } = &record.entry {
                if *status == SagaStatus::Compensating {
                    self.steps.iter_mut().for_each(|s| s.compensation_attempts_window = 0);
                    if self.cause.is_none() {
                        self.cause.clone_from(error);
                    }
                }
                self.status = *status;
                if error.is_some() {
                    self.error.clone_from(error);
                }
            }
            return;
        };
        match &record.entry {
            JournalEntry::ActionAttempt { attempt, .. } => {
                step.attempts = step.attempts.max(*attempt);
                step.attempt_open = true;
                step.started_at_ms.get_or_insert(at);
            }
            JournalEntry::ActionSucceeded { output, .. } => {
                step.succeeded = true;
                step.attempt_open = false;
                step.output = Some(output.clone());
                step.finished_at_ms = Some(at);
            }
            JournalEntry::ActionFailed { error, terminal, .. } => {
                step.attempt_open = false;
                step.refused |= *terminal;
                step.last_error = Some(error.clone());
                step.finished_at_ms = Some(at);
            }
            JournalEntry::CompensationAttempt { attempt, .. } => {
                step.compensation_attempts = step.compensation_attempts.max(*attempt);
                step.compensation_attempts_window += 1;
                step.compensation_open = true;
            }
            JournalEntry::CompensationSucceeded { .. } => {
                step.compensated = true;
                step.compensation_open = false;
                step.compensated_at_ms = Some(at);
            }
            JournalEntry::CompensationFailed { error, .. } => {
                step.compensation_open = false;
                step.last_error = Some(error.clone());
            }
            JournalEntry::CompensationSkipped { .. } => {
                step.skipped = true;
                step.compensation_open = false;
            }
            JournalEntry::Status { .. } => unreachable!("handled above"),
        }
    }

    pub fn next(&self, definition: &SagaDefinition) -> Next {
        match self.status {
            SagaStatus::Running => self.next_action(definition),
            SagaStatus::Compensating => self.next_compensation(definition),
            SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Stuck => Next::Idle,
        }
    }

    fn next_action(&self, definition: &SagaDefinition) -> Next {
        let Some((index, step)) = self.steps.iter().enumerate().find(|(_, s)| !s.succeeded) else {
            return Next::SetStatus(SagaStatus::Completed, None);
        };
        let name = &definition.steps[index].name;
        if step.refused {
            let error = step.last_error.as_deref().unwrap_or("refused");
            return Next::SetStatus(SagaStatus::Compensating, Some(format!("step `{name}` failed: {error}")));
        }
        if step.attempt_open {
            // The host died during this attempt: run it again under the same number.
            return Next::Action { step: index, attempt: step.attempts };
        }
        let max = definition.steps[index].max_attempts.max(1);
        if step.attempts >= max {
            let error = step.last_error.as_deref().unwrap_or("no result");
            return Next::SetStatus(
                SagaStatus::Compensating,
                Some(format!("step `{name}` failed after {} attempts: {error}", step.attempts)),
            );
        }
        Next::Action { step: index, attempt: step.attempts + 1 }
    }

    fn next_compensation(&self, definition: &SagaDefinition) -> Next {
        let pending = self
            .steps
            .iter()
            .enumerate()
            .rev()
            .find(|(i, s)| s.needs_compensation() && definition.steps[*i].compensation.is_some());
        let Some((index, step)) = pending else {
            return Next::SetStatus(SagaStatus::Compensated, self.cause.clone());
        };
        if step.compensation_open {
            return Next::Compensation { step: index, attempt: step.compensation_attempts };
        }
        if step.compensation_attempts_window >= definition.max_compensation_attempts.max(1) {
            let name = &definition.steps[index].name;
            let error = step.last_error.as_deref().unwrap_or("no result");
            return Next::SetStatus(
                SagaStatus::Stuck,
                Some(format!(
                    "compensation of step `{name}` failed {} times: {error}; resume or skip it",
                    step.compensation_attempts_window
                )),
            );
        }
        Next::Compensation { step: index, attempt: step.compensation_attempts + 1 }
    }
}

impl JournalEntry {
    fn step(&self) -> Option<usize> {
        match self {
            Self::ActionAttempt { step, .. }
            | Self::ActionSucceeded { step, .. }
            | Self::ActionFailed { step, .. }
            | Self::CompensationAttempt { step, .. }
            | Self::CompensationSucceeded { step }
            | Self::CompensationFailed { step, .. }
            | Self::CompensationSkipped { step } => Some(*step),
            Self::Status { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::workflows::{Invocation, StepDefinition};

    fn definition(steps: usize) -> SagaDefinition {
        SagaDefinition {
            name: "order".into(),
            input: Vec::new(),
            steps: (0..steps)
                .map(|i| StepDefinition {
                    name: format!("s{i}"),
                    action: Invocation { function: "f".into(), payload: Vec::new() },
                    compensation: Some(Invocation { function: "f".into(), payload: Vec::new() }),
                    max_attempts: 2,
                    timeout_ms: None,
                    backoff_ms: 1,
                })
                .collect(),
            max_compensation_attempts: 2,
        }
    }

    /// Applies entries one by one, checking `next` before each.
    fn run(def: &SagaDefinition, script: &[(Next, JournalEntry)]) -> SagaState {
        let mut state = SagaState::new(def);
        for (expected, entry) in script {
            assert_eq!(&state.next(def), expected, "before {entry:?}");
            state.apply(&JournalRecord { seq: state.next_seq, at_ms: 0, entry: entry.clone() });
        }
        state
    }

    fn status(s: SagaStatus) -> JournalEntry {
        JournalEntry::Status { status: s, error: None }
    }

    #[test]
    fn happy_path_completes() {
        let def = definition(2);
        let state = run(
            &def,
            &[
                (Next::Action { step: 0, attempt: 1 }, JournalEntry::ActionAttempt { step: 0, attempt: 1 }),
                (Next::Action { step: 0, attempt: 1 }, JournalEntry::ActionSucceeded { step: 0, output: vec![] }),
                (Next::Action { step: 1, attempt: 1 }, JournalEntry::ActionAttempt { step: 1, attempt: 1 }),
                (Next::Action { step: 1, attempt: 1 }, JournalEntry::ActionSucceeded { step: 1, output: vec![] }),
                (Next::SetStatus(SagaStatus::Completed, None), status(SagaStatus::Completed)),
            ],
        );
        assert_eq!(state.next(&def), Next::Idle);
        assert_eq!(state.steps[1].status(state.status), StepStatus::Succeeded);
    }

    #[test]
    fn refusal_compensates_only_earlier_steps_in_reverse() {
        let def = definition(3);
        let fail = |step| JournalEntry::ActionFailed { step, attempt: 1, error: "no stock".into(), terminal: true };
        let state = run(
            &def,
            &[
                (Next::Action { step: 0, attempt: 1 }, JournalEntry::ActionAttempt { step: 0, attempt: 1 }),
                (Next::Action { step: 0, attempt: 1 }, JournalEntry::ActionSucceeded { step: 0, output: vec![] }),
                (Next::Action { step: 1, attempt: 1 }, JournalEntry::ActionAttempt { step: 1, attempt: 1 }),
                (Next::Action { step: 1, attempt: 1 }, JournalEntry::ActionSucceeded { step: 1, output: vec![] }),
                (Next::Action { step: 2, attempt: 1 }, JournalEntry::ActionAttempt { step: 2, attempt: 1 }),
                (Next::Action { step: 2, attempt: 1 }, fail(2)),
            ],
        );
        let Next::SetStatus(SagaStatus::Compensating, Some(error)) = state.next(&def) else { panic!() };
        assert!(error.contains("s2") && error.contains("no stock"), "{error}");
        let mut state = state;
        let compensating = JournalEntry::Status { status: SagaStatus::Compensating, error: Some(error.clone()) };
        state.apply(&JournalRecord { seq: state.next_seq, at_ms: 0, entry: compensating });
        assert_eq!(state.next(&def), Next::Compensation { step: 1, attempt: 1 });
        state.apply(&JournalRecord {
            seq: 99,
            at_ms: 0,
            entry: JournalEntry::CompensationAttempt { step: 1, attempt: 1 },
        });
        state.apply(&JournalRecord { seq: 100, at_ms: 0, entry: JournalEntry::CompensationSucceeded { step: 1 } });
        assert_eq!(state.next(&def), Next::Compensation { step: 0, attempt: 1 });
        state.apply(&JournalRecord {
            seq: 101,
            at_ms: 0,
            entry: JournalEntry::CompensationAttempt { step: 0, attempt: 1 },
        });
        state.apply(&JournalRecord { seq: 102, at_ms: 0, entry: JournalEntry::CompensationSucceeded { step: 0 } });
        // The saga's error says why it compensated, not null.
        assert_eq!(state.next(&def), Next::SetStatus(SagaStatus::Compensated, Some(error)));
        assert_eq!(state.steps[2].status(SagaStatus::Compensated), StepStatus::Failed);
    }

    #[test]
    fn exhausted_retries_compensate_the_uncertain_step_too() {
        let def = definition(2);
        let retry = |attempt| JournalEntry::ActionFailed { step: 1, attempt, error: "timeout".into(), terminal: false };
        let mut state = run(
            &def,
            &[
                (Next::Action { step: 0, attempt: 1 }, JournalEntry::ActionAttempt { step: 0, attempt: 1 }),
                (Next::Action { step: 0, attempt: 1 }, JournalEntry::ActionSucceeded { step: 0, output: vec![] }),
                (Next::Action { step: 1, attempt: 1 }, JournalEntry::ActionAttempt { step: 1, attempt: 1 }),
                (Next::Action { step: 1, attempt: 1 }, retry(1)),
                (Next::Action { step: 1, attempt: 2 }, JournalEntry::ActionAttempt { step: 1, attempt: 2 }),
                (Next::Action { step: 1, attempt: 2 }, retry(2)),
            ],
        );
        assert!(matches!(state.next(&def), Next::SetStatus(SagaStatus::Compensating, Some(_))));
        state.apply(&JournalRecord { seq: 50, at_ms: 0, entry: status(SagaStatus::Compensating) });
        // The timed-out step may have had its effect: it is compensated first.
        assert_eq!(state.next(&def), Next::Compensation { step: 1, attempt: 1 });
    }

    #[test]
    fn a_crash_mid_attempt_repeats_that_attempt() {
        let def = definition(1);
        let state =
            run(&def, &[(Next::Action { step: 0, attempt: 1 }, JournalEntry::ActionAttempt { step: 0, attempt: 1 })]);
        assert_eq!(state.next(&def), Next::Action { step: 0, attempt: 1 });
    }

    #[test]
    fn failing_compensation_gets_stuck_and_resume_or_skip_moves_on() {
        let def = definition(1);
        let cfail = |attempt| JournalEntry::CompensationFailed { step: 0, attempt, error: "down".into() };
        let mut state = run(
            &def,
            &[
                (Next::Action { step: 0, attempt: 1 }, JournalEntry::ActionAttempt { step: 0, attempt: 1 }),
                (Next::Action { step: 0, attempt: 1 }, JournalEntry::ActionSucceeded { step: 0, output: vec![] }),
            ],
        );
        state.apply(&JournalRecord { seq: 10, at_ms: 0, entry: status(SagaStatus::Compensating) });
        for attempt in 1..=2 {
            assert_eq!(state.next(&def), Next::Compensation { step: 0, attempt });
            state.apply(&JournalRecord {
                seq: 10 + u64::from(attempt) * 2,
                at_ms: 0,
                entry: JournalEntry::CompensationAttempt { step: 0, attempt },
            });
            state.apply(&JournalRecord { seq: 11 + u64::from(attempt) * 2, at_ms: 0, entry: cfail(attempt) });
        }
        assert!(matches!(state.next(&def), Next::SetStatus(SagaStatus::Stuck, Some(_))));
        state.apply(&JournalRecord { seq: 20, at_ms: 0, entry: status(SagaStatus::Stuck) });
        assert_eq!(state.next(&def), Next::Idle);
        // Resume: a fresh window of attempts, numbering continues.
        state.apply(&JournalRecord { seq: 21, at_ms: 0, entry: status(SagaStatus::Compensating) });
        assert_eq!(state.next(&def), Next::Compensation { step: 0, attempt: 3 });
        // Skip instead: the saga ends compensated.
        state.apply(&JournalRecord { seq: 22, at_ms: 0, entry: JournalEntry::CompensationSkipped { step: 0 } });
        assert_eq!(state.next(&def), Next::SetStatus(SagaStatus::Compensated, None));
    }
}
