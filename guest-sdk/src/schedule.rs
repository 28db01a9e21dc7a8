//! Schedules: the tick a [`macro@crate::scheduled_handler`] receives.
//!
//! A function deployed with `--schedule '<cron>'` is called once per tick, on one node of the
//! cluster. A node that dies while running a tick leaves it to another node, which runs it
//! again: [`ScheduledTick::event_id`] is the same for every run of one tick, so using it as
//! the id of the events the tick appends makes those appends (and so its effects) exactly once:
//!
//! ```no_run
//! use faas_sdk::event_store::{self, ExpectedVersion, NewEvent};
//! use faas_sdk::schedule::ScheduledTick;
//! use faas_sdk::scheduled_handler;
//!
//! #[scheduled_handler]
//! fn nightly(tick: ScheduledTick) -> Result<(), String> {
//!     let event = NewEvent::new("ReportDue", tick.planned_at.to_string().into_bytes()).with_id(tick.event_id("report"));
//!     event_store::append("reports", ExpectedVersion::Any, vec![event]).map_err(|e| e.to_string())?;
//!     Ok(())
//! }
//! # fn main() {}
//! ```

use crate::bindings::scheduled::exports::faas::platform::scheduled_handler as wit;

/// One tick of a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledTick {
    /// The schedule as deployed: its cron expression, and its time zone as `expr [Zone]`.
    pub schedule: String,
    /// When the tick was due, in milliseconds since the Unix epoch.
    pub planned_at: u64,
    /// When this run started (later than planned after a catch-up or a retry).
    pub fired_at: u64,
    /// 1 for the first run; more when a node died while running it and another runs it again.
    pub attempt: u32,
}

impl ScheduledTick {
    /// A UUID that is the same for every run of this tick (schedule and planned time) and
    /// differs per `purpose`: the id for the events it appends.
    pub fn event_id(&self, purpose: &str) -> String {
        crate::event_store::deterministic_id(
            format!("faas-tick:{}", self.schedule).as_bytes(),
            format!("{}/{purpose}", self.planned_at).as_bytes(),
        )
    }

    /// How late this run started, in milliseconds.
    pub fn lateness_ms(&self) -> u64 {
        self.fired_at.saturating_sub(self.planned_at)
    }
}

pub(crate) fn tick_of(tick: wit::ScheduledTick) -> ScheduledTick {
    ScheduledTick {
        schedule: tick.schedule,
        planned_at: tick.planned_at,
        fired_at: tick.fired_at,
        attempt: tick.attempt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_the_same_for_every_run_of_a_tick() {
        let tick = ScheduledTick { schedule: "@hourly".into(), planned_at: 3_600_000, fired_at: 3_600_250, attempt: 1 };
        let again = ScheduledTick { attempt: 2, fired_at: 3_700_000, ..tick.clone() };
        assert_eq!(tick.event_id("a"), again.event_id("a"));
        assert_ne!(tick.event_id("a"), tick.event_id("b"));
        let next = ScheduledTick { planned_at: 7_200_000, ..tick.clone() };
        assert_ne!(tick.event_id("a"), next.event_id("a"));
        assert_eq!(tick.lateness_ms(), 250);
    }
}
