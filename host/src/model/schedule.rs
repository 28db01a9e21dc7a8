//! Cron schedules of a deploy: [`ScheduleSpec`] as stored with a version, and [`Schedule`], the
//! parsed expression in its time zone that says when the next ticks are.
//!
//! Parsing is `croner`'s: standard 5-field cron (minute hour day-of-month month day-of-week), an
//! optional leading seconds field, `@hourly`/`@daily`/`@weekly`/`@monthly`/`@yearly` aliases, and
//! `L`, `W`, `#`. It was chosen over the `cron` crate because `cron` accepts only 6- or 7-field
//! expressions (seconds first), so the crontab lines users paste would be refused, and over
//! `saffron` because that one has no time zones. Time zones come from `jiff` with the IANA
//! database compiled in: a tick at `0 9 * * *` in `Europe/Berlin` is 09:00 local time on both
//! sides of a DST change, on any machine.

use croner::Cron;
use croner::parser::CronParser;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// At most this many schedules per function.
pub const MAX_SCHEDULES: usize = 20;

/// One schedule, as a deploy gives it (`--schedule`, `--schedule-tz`, `--schedule-route`,
/// `--schedule-catch-up`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// A cron expression: 5 fields, or 6 with seconds first, or an `@hourly`-style alias.
    pub cron: String,
    /// An IANA time zone (`Europe/Berlin`); default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// For an HTTP-only component: the path the host calls with `GET` (and an `x-faas-schedule`
    /// header) at each tick. Without it, the component's `scheduled-handler` export is called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// What to do with ticks that passed while no node ran the schedule.
    #[serde(default)]
    pub catch_up: CatchUp,
}

/// Ticks missed while no node was up (or all were busy past the tick).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Skip them; only a tick that is on time runs.
    None,
    /// Run the most recent one, once, and skip the rest.
    #[default]
    Last,
    /// Run every one, oldest first (at most [`MAX_CATCH_UP`]).
    All,
}

/// The most missed ticks `catch_up: all` runs; older ones are skipped.
pub const MAX_CATCH_UP: usize = 1000;

impl CatchUp {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(Self::None),
            "last" => Ok(Self::Last),
            "all" => Ok(Self::All),
            other => Err(format!("unknown catch-up `{other}`: use none, last or all")),
        }
    }
}

impl ScheduleSpec {
    pub fn new(cron: &str) -> Self {
        Self { cron: cron.to_owned(), tz: None, route: None, catch_up: CatchUp::default() }
    }

    /// The schedule's identity: its ticks are recorded under it, so a redeploy with the same
    /// expression and zone keeps its history (and does not fire a tick twice).
    pub fn key(&self) -> String {
        match &self.tz {
            Some(tz) => format!("{} [{tz}]", self.cron.trim()),
            None => self.cron.trim().to_owned(),
        }
    }

    pub fn parse(&self) -> Result<Schedule, String> {
        let expression = self.cron.trim();
        if expression.is_empty() || expression.len() > 200 {
            return Err("schedule: a cron expression is 1-200 bytes".into());
        }
        let cron = CronParser::new().parse(expression).map_err(|e| format!("schedule `{expression}`: {e}"))?;
        let tz = match &self.tz {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| {
                format!("schedule `{expression}`: unknown time zone `{name}` (use an IANA name like `Europe/Berlin`)")
            })?,
        };
        if let Some(route) = &self.route
            && (!route.starts_with('/') || route.len() > 1024 || route.chars().any(|c| c.is_whitespace() || c == '#'))
        {
            return Err(format!("schedule route `{route}` must be a path starting with `/`"));
        }
        let schedule = Schedule { key: self.key(), cron, tz };
        // An expression that never matches (`0 0 30 2 *`) is refused now, not discovered never.
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        if schedule.next_after(now).is_none() {
            return Err(format!("schedule `{expression}` never fires"));
        }
        Ok(schedule)
    }
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub key: String,
    cron: Cron,
    tz: TimeZone,
}

impl Schedule {
    /// The first tick strictly after `after_ms` (milliseconds since the epoch).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start = Timestamp::from_millisecond(after_ms).ok()?.to_zoned(self.tz.clone());
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(next.timestamp().as_millisecond())
    }

    /// The ticks in `(after_ms, until_ms]`, oldest first; when there are more than `cap`, the
    /// newest `cap` of them (and how many were left out before them).
    pub fn due(&self, after_ms: i64, until_ms: i64, cap: usize) -> (Vec<i64>, usize) {
        let mut ticks = std::collections::VecDeque::new();
        let mut dropped = 0;
        let mut cursor = after_ms;
        while let Some(next) = self.next_after(cursor)
            && next <= until_ms
        {
            if ticks.len() == cap {
                ticks.pop_front();
                dropped += 1;
            }
            ticks.push_back(next);
            cursor = next;
        }
        (ticks.into(), dropped)
    }

    /// The next `n` ticks after `after_ms`.
    pub fn upcoming(&self, after_ms: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = after_ms;
        while out.len() < n
            && let Some(next) = self.next_after(cursor)
        {
            out.push(next);
            cursor = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn five_and_six_field_expressions_and_aliases() {
        let hourly = ScheduleSpec::new("@hourly").parse().unwrap();
        assert_eq!(hourly.next_after(ms("2026-03-01T10:15:00Z")), Some(ms("2026-03-01T11:00:00Z")));
        let every_five = ScheduleSpec::new("*/5 * * * *").parse().unwrap();
        assert_eq!(every_five.next_after(ms("2026-03-01T10:15:00Z")), Some(ms("2026-03-01T10:20:00Z")));
        let every_second = ScheduleSpec::new("* * * * * *").parse().unwrap();
        assert_eq!(every_second.next_after(ms("2026-03-01T10:15:00.400Z")), Some(ms("2026-03-01T10:15:01Z")));
        let (ticks, dropped) = every_second.due(ms("2026-03-01T10:15:00Z"), ms("2026-03-01T10:15:05Z"), 3);
        assert_eq!((ticks.len(), dropped), (3, 2));
        assert_eq!(ticks[2], ms("2026-03-01T10:15:05Z"), "the newest are kept");
    }

    #[test]
    fn time_zones_follow_daylight_saving() {
        let mut spec = ScheduleSpec::new("0 9 * * *");
        spec.tz = Some("Europe/Berlin".into());
        let nine = spec.parse().unwrap();
        // CET (UTC+1) before 29 March 2026, CEST (UTC+2) after.
        assert_eq!(nine.next_after(ms("2026-03-27T12:00:00Z")), Some(ms("2026-03-28T08:00:00Z")));
        assert_eq!(nine.next_after(ms("2026-03-28T12:00:00Z")), Some(ms("2026-03-29T07:00:00Z")));
        assert_eq!(spec.key(), "0 9 * * * [Europe/Berlin]");
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        assert!(ScheduleSpec::new("61 * * * *").parse().unwrap_err().contains("61 * * * *"));
        assert!(ScheduleSpec::new("").parse().is_err());
        let mut spec = ScheduleSpec::new("@daily");
        spec.tz = Some("Mars/Olympus".into());
        assert!(spec.parse().unwrap_err().contains("unknown time zone"));
        assert!(ScheduleSpec::new("0 0 30 2 *").parse().unwrap_err().contains("never fires"));
        let mut spec = ScheduleSpec::new("@daily");
        spec.route = Some("tick".into());
        assert!(spec.parse().unwrap_err().contains("starting with `/`"));
        assert_eq!(CatchUp::parse("all"), Ok(CatchUp::All));
        assert!(CatchUp::parse("some").is_err());
    }
}
