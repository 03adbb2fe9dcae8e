//! SSM maintenance-window schedule expressions: parsing, validation and next run times.
//!
//! The acceptance rules follow the AWS Systems Manager User Guide, "Reference: Cron and rate
//! expressions for Systems Manager" (sections "General information about cron and rate
//! expressions" and "Cron and rate expressions for maintenance windows"):
//!
//! * `cron(...)` has six required fields `Minutes Hours Day-of-month Month Day-of-week Year`.
//!   Maintenance windows (unlike State Manager associations) also accept an optional leading
//!   `Seconds` field, e.g. `cron(24 30 09 ? * * *)` runs at 9:30:24 every day.
//! * Values and wildcards per field:
//!   Minutes `0-59` `, - * /`; Hours `0-23` `, - * /`; Day-of-month `1-31` `, - * ? / L W`;
//!   Month `1-12` or `JAN-DEC` `, - * /`; Day-of-week `1-7` or `SUN-SAT` (1 = Sunday)
//!   `, - * ? / L #`; Year `1970-2199` `, - * /`.
//! * A value in day-of-month and in day-of-week can't be combined: one of them must be `?`.
//! * Cron expressions that lead to rates faster than 5 minutes aren't supported.
//! * `rate(Value Unit)`: Value a positive whole number, Unit `minute(s)`, `hour(s)`, `day(s)`;
//!   the unit is singular exactly when the value is 1 (`rate(1 hours)`, `rate(5 hour)` are
//!   invalid).
//! * `at(yyyy-mm-ddThh:mm:ss)`: a single run at a timestamp in UTC.
//! * Schedule offsets (API `ScheduleOffset`, valid range 1-6 days) apply to cron expressions only.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Days, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

/// Smallest interval SSM accepts between two runs ("Cron expressions that lead to rates faster
/// than five (5) minute aren't supported").
const MIN_INTERVAL_MINUTES: u32 = 5;

/// `ScheduleOffset` valid range in the `CreateMaintenanceWindow` API.
const MAX_SCHEDULE_OFFSET_DAYS: u32 = 6;

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
/// AWS numbers the days of the week 1-7 starting with Sunday.
const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Why a schedule expression, offset or time zone is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the schedule is empty; use cron(Minutes Hours Day-of-month Month Day-of-week Year), rate(Value Unit) or at(yyyy-mm-ddThh:mm:ss)")]
    Empty,
    #[error("`{expr}` is not a schedule expression; use cron(Minutes Hours Day-of-month Month Day-of-week Year), rate(Value Unit) or at(yyyy-mm-ddThh:mm:ss), e.g. cron(0 6 ? * SAT#1 *)")]
    UnknownForm { expr: String },
    #[error("cron expression has {found} field(s); maintenance windows need 6 (Minutes Hours Day-of-month Month Day-of-week Year), optionally preceded by Seconds, e.g. cron(0 6 ? * SAT#1 *)")]
    FieldCount { found: usize },
    #[error("{field} `{token}`: {problem}; allowed: {}", .field.allowed())]
    InvalidField {
        field: CronField,
        token: String,
        problem: String,
    },
    #[error("day-of-month `{day_of_month}` and day-of-week `{day_of_week}`: {problem}; give a value in one of them and `?` in the other, e.g. cron(0 6 ? * SAT *) or cron(0 6 1 * ? *)")]
    DayFields {
        day_of_month: String,
        day_of_week: String,
        problem: &'static str,
    },
    #[error("cron expression runs {minutes} minute(s) apart at times; SSM doesn't support schedules faster than every 5 minutes")]
    TooFrequent { minutes: u32 },
    #[error("rate expression `{expr}`: {problem}; use rate(Value Unit) with a whole Value and Unit minute|minutes|hour|hours|day|days (singular only for 1), at least 5 minutes, e.g. rate(2 hours)")]
    InvalidRate { expr: String, problem: String },
    #[error("at expression `{expr}`: {problem}; use at(yyyy-mm-ddThh:mm:ss) with a UTC timestamp, e.g. at(2027-07-07T15:55:00)")]
    InvalidAt { expr: String, problem: String },
    #[error("unknown time zone `{name}`; use an IANA name like Europe/Zurich or Etc/UTC")]
    UnknownTimezone { name: String },
    #[error("schedule offset of {days} days is out of range; SSM allows 1-6 days (0 = no offset)")]
    OffsetOutOfRange { days: u32 },
    #[error("schedule offset of {days} days given for `{schedule}`; SSM supports schedule offsets only for cron expressions")]
    OffsetNeedsCron { days: u32, schedule: String },
}

/// The fields of a cron expression, in the operator's words (used in error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronField {
    Seconds,
    Minutes,
    Hours,
    DayOfMonth,
    Month,
    DayOfWeek,
    Year,
}

impl CronField {
    fn min(self) -> u32 {
        match self {
            CronField::Seconds | CronField::Minutes | CronField::Hours => 0,
            CronField::DayOfMonth | CronField::Month | CronField::DayOfWeek => 1,
            CronField::Year => 1970,
        }
    }

    fn max(self) -> u32 {
        match self {
            CronField::Seconds | CronField::Minutes => 59,
            CronField::Hours => 23,
            CronField::DayOfMonth => 31,
            CronField::Month => 12,
            CronField::DayOfWeek => 7,
            CronField::Year => 2199,
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            CronField::Month => &MONTH_NAMES,
            CronField::DayOfWeek => &WEEKDAY_NAMES,
            _ => &[],
        }
    }

    fn allowed(self) -> &'static str {
        match self {
            CronField::Seconds => "a single number 0-59",
            CronField::Minutes => "0-59 with , - * /",
            CronField::Hours => "0-23 with , - * /",
            CronField::DayOfMonth => "1-31 with , - * ? /, or L (last day), or nW (weekday nearest day n)",
            CronField::Month => "1-12 or JAN-DEC with , - * /",
            CronField::DayOfWeek => {
                "1-7 or SUN-SAT (1 = SUN) with , - * ? /, or nL (last day n of the month), or n#k (k-th day n of the month, k 1-5)"
            }
            CronField::Year => "1970-2199 with , - * /",
        }
    }

    /// Numbers, except month and day-of-week values which read better as names.
    fn render(self, value: u32) -> String {
        let names = self.names();
        match value.checked_sub(1).and_then(|i| names.get(i as usize)) {
            Some(name) => (*name).to_string(),
            None => value.to_string(),
        }
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CronField::Seconds => "Seconds",
            CronField::Minutes => "Minutes",
            CronField::Hours => "Hours",
            CronField::DayOfMonth => "Day-of-month",
            CronField::Month => "Month",
            CronField::DayOfWeek => "Day-of-week",
            CronField::Year => "Year",
        })
    }
}

/// A parsed maintenance-window schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Cron(Cron),
    Rate(Rate),
    /// A single run; the timestamp is UTC wall-clock time as SSM documents for `at(...)`.
    At(NaiveDateTime),
}

/// A validated `cron(...)` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    seconds: Option<u32>,
    minutes: Field,
    hours: Field,
    day_of_month: DayOfMonth,
    month: Field,
    day_of_week: DayOfWeek,
    year: Field,
}

/// A validated `rate(Value Unit)` expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    value: u32,
    unit: RateUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    Minutes,
    Hours,
    Days,
}

impl Rate {
    pub fn value(&self) -> u32 {
        self.value
    }

    pub fn unit(&self) -> RateUnit {
        self.unit
    }
}

impl Schedule {
    /// Parses a maintenance-window `Schedule` with SSM's acceptance rules (see module docs).
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let expr = expr.trim();
        if expr.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let unknown = || ScheduleError::UnknownForm {
            expr: expr.to_string(),
        };
        let (kind, inner) = expr
            .strip_suffix(')')
            .and_then(|rest| rest.split_once('('))
            .ok_or_else(unknown)?;
        match kind {
            "cron" => Cron::parse(inner).map(Schedule::Cron),
            "rate" => Rate::parse(expr, inner).map(Schedule::Rate),
            "at" => parse_at(expr, inner).map(Schedule::At),
            _ => Err(unknown()),
        }
    }

    /// The fixed start time (hour, minute) if the schedule has exactly one, e.g.
    /// `cron(0 6 ? * SAT#1 *)` -> `Some((6, 0))`; rate -> `None`. For `at(...)` it is the time
    /// as written, which SSM documents as UTC.
    pub fn fixed_time(&self) -> Option<(u32, u32)> {
        match self {
            Schedule::Cron(cron) => {
                let hours = cron.hours.values();
                let minutes = cron.minutes.values();
                match (hours.as_slice(), minutes.as_slice()) {
                    ([hour], [minute]) => Some((*hour, *minute)),
                    _ => None,
                }
            }
            Schedule::Rate(_) => None,
            Schedule::At(at) => Some((at.hour(), at.minute())),
        }
    }

    /// Checks a `ScheduleOffset` for this schedule: 0 means none; 1-6 days, cron only.
    pub fn check_offset(&self, offset_days: u32) -> Result<(), ScheduleError> {
        if offset_days == 0 {
            return Ok(());
        }
        if offset_days > MAX_SCHEDULE_OFFSET_DAYS {
            return Err(ScheduleError::OffsetOutOfRange { days: offset_days });
        }
        match self {
            Schedule::Cron(_) => Ok(()),
            Schedule::Rate(_) | Schedule::At(_) => Err(ScheduleError::OffsetNeedsCron {
                days: offset_days,
                schedule: self.to_string(),
            }),
        }
    }

    /// Next `n` run instants strictly after `after`, evaluated in `tz`, with SSM's
    /// `ScheduleOffset` (`offset_days`, 0 = none) added after the cron match.
    ///
    /// Returns no runs when [`Schedule::check_offset`] rejects `offset_days`.
    ///
    /// * Offset: the User Guide says the window "won't run until 11:30 PM two days later" for
    ///   `cron(30 23 ? * TUE#3 *)` with offset 2, so the offset moves the local date and keeps
    ///   the local time. A cron match that is already past when the window is evaluated does
    ///   not run even if match + offset is still ahead ("if you specify a cron expression that
    ///   would have run a maintenance window yesterday and add a schedule offset of two days,
    ///   the maintenance window won't run tomorrow"), so matches are filtered on the match
    ///   instant, not the offset run.
    /// * DST (SSM doesn't document it; this is our choice): a local time inside a
    ///   spring-forward gap runs at the first valid instant after it (the transition), an
    ///   ambiguous fall-back time runs once, at its first occurrence. Two matches that land
    ///   on the same instant run once.
    /// * Rates: `CreateMaintenanceWindow` says a rate schedule counts from its start date
    ///   (or "now" if that is past), so `after` is the anchor. Minute and hour rates are
    ///   elapsed time; day rates keep the anchor's local wall-clock time in `tz`, like the
    ///   User Guide's "runs at 3:15 AM every Tuesday" example for `rate(7 days)`.
    /// * Search horizon: cron matches are searched year by year and month by month, skipping
    ///   years and months the expression excludes, up to the last year SSM accepts (2199);
    ///   at most ~84,000 days are examined, so rare schedules like `SAT#5` still resolve.
    pub fn next_runs(
        &self,
        n: usize,
        after: DateTime<Utc>,
        tz: Tz,
        offset_days: u32,
    ) -> Vec<DateTime<Tz>> {
        if n == 0 || self.check_offset(offset_days).is_err() {
            return Vec::new();
        }
        match self {
            Schedule::Cron(cron) => cron.next_runs(n, after, tz, offset_days),
            Schedule::Rate(rate) => rate.next_runs(n, after, tz),
            Schedule::At(at) => {
                let instant = Utc.from_utc_datetime(at);
                if instant > after {
                    vec![instant.with_timezone(&tz)]
                } else {
                    Vec::new()
                }
            }
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron(cron) => write!(f, "cron({cron})"),
            Schedule::Rate(rate) => write!(f, "rate({rate})"),
            Schedule::At(at) => write!(f, "at({})", at.format("%Y-%m-%dT%H:%M:%S")),
        }
    }
}

/// Parses a `ScheduleTimezone` (IANA name, as SSM requires).
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownTimezone {
            name: name.to_string(),
        })
}

// ---------------------------------------------------------------------------------------------
// cron

/// One comma-separated element of a field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// `*` or `*/step`
    All { step: u32 },
    /// `v` or `v/step` (from v up to the field maximum)
    From { start: u32, step: Option<u32> },
    /// `a-b` or `a-b/step`
    Range { from: u32, to: u32, step: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    kind: CronField,
    items: Vec<Item>,
}

impl Field {
    fn contains(&self, value: u32) -> bool {
        let min = self.kind.min();
        self.items.iter().any(|item| match *item {
            Item::All { step } => value >= min && (value - min) % step == 0,
            Item::From { start, step: None } => value == start,
            Item::From {
                start,
                step: Some(step),
            } => value >= start && (value - start) % step == 0,
            Item::Range { from, to, step } => {
                (from..=to).contains(&value) && (value - from) % step == 0
            }
        })
    }

    fn values(&self) -> Vec<u32> {
        (self.kind.min()..=self.kind.max())
            .filter(|v| self.contains(*v))
            .collect()
    }

    fn parse(kind: CronField, token: &str) -> Result<Field, ScheduleError> {
        let items = token
            .split(',')
            .map(|item| parse_item(kind, token, item))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Field { kind, items })
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind;
        let parts: Vec<String> = self
            .items
            .iter()
            .map(|item| match *item {
                Item::All { step: 1 } => "*".to_string(),
                Item::All { step } => format!("*/{step}"),
                Item::From { start, step: None } => kind.render(start),
                Item::From {
                    start,
                    step: Some(step),
                } => format!("{}/{step}", kind.render(start)),
                Item::Range { from, to, step: 1 } => {
                    format!("{}-{}", kind.render(from), kind.render(to))
                }
                Item::Range { from, to, step } => {
                    format!("{}-{}/{step}", kind.render(from), kind.render(to))
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn field_error(kind: CronField, token: &str, problem: impl Into<String>) -> ScheduleError {
    ScheduleError::InvalidField {
        field: kind,
        token: token.to_string(),
        problem: problem.into(),
    }
}

/// A single value: a number in the field's range or, for month and day-of-week, a name.
fn parse_value(kind: CronField, token: &str, text: &str) -> Result<u32, ScheduleError> {
    if text.is_empty() {
        return Err(field_error(kind, token, "a value is missing"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let value: u32 = text
            .parse()
            .map_err(|_| field_error(kind, token, format!("`{text}` is too large")))?;
        if !(kind.min()..=kind.max()).contains(&value) {
            return Err(field_error(
                kind,
                token,
                format!("{value} is out of range {}-{}", kind.min(), kind.max()),
            ));
        }
        return Ok(value);
    }
    let upper = text.to_ascii_uppercase();
    match kind.names().iter().position(|name| *name == upper) {
        Some(index) => Ok(index as u32 + 1),
        None if kind.names().is_empty() => Err(field_error(
            kind,
            token,
            format!("`{text}` is not a number"),
        )),
        None => Err(field_error(
            kind,
            token,
            format!("`{text}` is not a number or a name"),
        )),
    }
}

fn parse_step(kind: CronField, token: &str, text: &str) -> Result<u32, ScheduleError> {
    let span = kind.max() - kind.min() + 1;
    match text.parse::<u32>() {
        Ok(step) if (1..=span).contains(&step) && text.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(step)
        }
        _ => Err(field_error(
            kind,
            token,
            format!("increment `/{text}` must be a whole number 1-{span}"),
        )),
    }
}

fn parse_item(kind: CronField, token: &str, item: &str) -> Result<Item, ScheduleError> {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(parse_step(kind, token, step)?)),
        None => (item, None),
    };
    if base == "*" {
        return Ok(Item::All {
            step: step.unwrap_or(1),
        });
    }
    match base.split_once('-') {
        Some((from, to)) => {
            let from = parse_value(kind, token, from)?;
            let to = parse_value(kind, token, to)?;
            if from > to {
                return Err(field_error(
                    kind,
                    token,
                    format!(
                        "range {}-{} runs backwards; write it from low to high or as a list",
                        kind.render(from),
                        kind.render(to)
                    ),
                ));
            }
            Ok(Item::Range {
                from,
                to,
                step: step.unwrap_or(1),
            })
        }
        None => Ok(Item::From {
            start: parse_value(kind, token, base)?,
            step,
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfMonth {
    /// `?`
    Any,
    Days(Field),
    /// `L`: the last day of the month.
    Last,
    /// `nW`: the weekday (Mon-Fri) nearest day n, within the same month.
    NearestWeekday(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfWeek {
    /// `?`
    Any,
    Days(Field),
    /// `nL`: the last day n of the month (1 = SUN).
    LastInMonth(u32),
    /// `n#k`: the k-th day n of the month.
    Nth {
        weekday: u32,
        nth: u32,
    },
}

impl DayOfMonth {
    fn parse(token: &str) -> Result<DayOfMonth, ScheduleError> {
        let kind = CronField::DayOfMonth;
        let upper = token.to_ascii_uppercase();
        if token == "?" {
            return Ok(DayOfMonth::Any);
        }
        if upper == "L" {
            return Ok(DayOfMonth::Last);
        }
        let special = upper.contains('L') || upper.contains('W');
        if special && (upper.contains(',') || upper.contains('-') || upper.contains('/')) {
            return Err(field_error(
                kind,
                token,
                "L and W can't be combined with lists, ranges or increments",
            ));
        }
        if upper == "LW" {
            return Err(field_error(kind, token, "LW isn't supported"));
        }
        if let Some(day) = upper.strip_suffix('W') {
            if !day.is_empty() && day.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(DayOfMonth::NearestWeekday(parse_value(kind, token, day)?));
            }
        }
        Field::parse(kind, token).map(DayOfMonth::Days)
    }

    fn matches(&self, date: NaiveDate) -> bool {
        let (year, month, day) = (date.year(), date.month(), date.day());
        match self {
            DayOfMonth::Any => true,
            DayOfMonth::Days(field) => field.contains(day),
            DayOfMonth::Last => Some(day) == days_in_month(year, month),
            DayOfMonth::NearestWeekday(n) => nearest_weekday(year, month, *n) == Some(day),
        }
    }
}

impl fmt::Display for DayOfMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DayOfMonth::Any => f.write_str("?"),
            DayOfMonth::Days(field) => write!(f, "{field}"),
            DayOfMonth::Last => f.write_str("L"),
            DayOfMonth::NearestWeekday(day) => write!(f, "{day}W"),
        }
    }
}

impl DayOfWeek {
    fn parse(token: &str) -> Result<DayOfWeek, ScheduleError> {
        let kind = CronField::DayOfWeek;
        let upper = token.to_ascii_uppercase();
        if token == "?" {
            return Ok(DayOfWeek::Any);
        }
        let special = upper.contains('#') || upper.ends_with('L');
        if special && (upper.contains(',') || upper.contains('-') || upper.contains('/')) {
            // The EventBridge reference, which SSM's cron syntax shares, spells it out:
            // "3#1,6#3" is invalid because # allows only one expression in the field.
            return Err(field_error(
                kind,
                token,
                "L and # allow only a single expression, no lists, ranges or increments",
            ));
        }
        if let Some((weekday, nth)) = upper.split_once('#') {
            let weekday = parse_value(kind, token, weekday)?;
            return match nth.parse::<u32>() {
                Ok(nth @ 1..=5) => Ok(DayOfWeek::Nth { weekday, nth }),
                _ => Err(field_error(
                    kind,
                    token,
                    format!("occurrence `#{nth}` must be 1-5"),
                )),
            };
        }
        if upper == "L" {
            // A bare L in day-of-week is the last day of the week: Saturday.
            return Ok(DayOfWeek::Days(Field {
                kind,
                items: vec![Item::From {
                    start: 7,
                    step: None,
                }],
            }));
        }
        if let Some(weekday) = upper.strip_suffix('L') {
            return Ok(DayOfWeek::LastInMonth(parse_value(kind, token, weekday)?));
        }
        Field::parse(kind, token).map(DayOfWeek::Days)
    }

    fn matches(&self, date: NaiveDate) -> bool {
        let weekday = aws_weekday(date);
        match self {
            DayOfWeek::Any => true,
            DayOfWeek::Days(field) => field.contains(weekday),
            DayOfWeek::LastInMonth(wanted) => {
                *wanted == weekday
                    && days_in_month(date.year(), date.month())
                        .is_some_and(|last| date.day() + 7 > last)
            }
            DayOfWeek::Nth {
                weekday: wanted,
                nth,
            } => *wanted == weekday && (date.day() - 1) / 7 + 1 == *nth,
        }
    }
}

impl fmt::Display for DayOfWeek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DayOfWeek::Any => f.write_str("?"),
            DayOfWeek::Days(field) => write!(f, "{field}"),
            DayOfWeek::LastInMonth(weekday) => write!(f, "{weekday}L"),
            DayOfWeek::Nth { weekday, nth } => {
                write!(f, "{}#{nth}", CronField::DayOfWeek.render(*weekday))
            }
        }
    }
}

impl Cron {
    fn parse(inner: &str) -> Result<Cron, ScheduleError> {
        let tokens: Vec<&str> = inner.split_whitespace().collect();
        let (seconds, tokens) = match tokens.as_slice() {
            [seconds, rest @ ..] if rest.len() == 6 => (Some(parse_seconds(seconds)?), rest),
            rest if rest.len() == 6 => (None, rest),
            other => return Err(ScheduleError::FieldCount { found: other.len() }),
        };
        let [minutes, hours, dom, month, dow, year] = tokens else {
            return Err(ScheduleError::FieldCount {
                found: tokens.len(),
            });
        };
        let minutes = Field::parse(CronField::Minutes, minutes)?;
        let hours = Field::parse(CronField::Hours, hours)?;
        let day_of_month = DayOfMonth::parse(dom)?;
        let month = Field::parse(CronField::Month, month)?;
        let day_of_week = DayOfWeek::parse(dow)?;
        let year = Field::parse(CronField::Year, year)?;

        let problem = match (&day_of_month, &day_of_week) {
            (DayOfMonth::Any, DayOfWeek::Any) => Some("both are `?`"),
            (DayOfMonth::Any, _) | (_, DayOfWeek::Any) => None,
            _ => Some("SSM doesn't support values in both"),
        };
        if let Some(problem) = problem {
            return Err(ScheduleError::DayFields {
                day_of_month: (*dom).to_string(),
                day_of_week: (*dow).to_string(),
                problem,
            });
        }

        let cron = Cron {
            seconds,
            minutes,
            hours,
            day_of_month,
            month,
            day_of_week,
            year,
        };
        if let Some(gap) = cron.smallest_gap_minutes() {
            if gap < MIN_INTERVAL_MINUTES {
                return Err(ScheduleError::TooFrequent { minutes: gap });
            }
        }
        Ok(cron)
    }

    /// Times of day (local) the expression matches, in order.
    fn times_of_day(&self) -> Vec<NaiveTime> {
        let second = self.seconds.unwrap_or(0);
        let minutes = self.minutes.values();
        self.hours
            .values()
            .into_iter()
            .flat_map(|hour| {
                minutes
                    .iter()
                    .filter_map(move |minute| NaiveTime::from_hms_opt(hour, *minute, second))
            })
            .collect()
    }

    /// The smallest distance between two matching times of day, counting the wrap from the
    /// last time of one day to the first of the next (conservative: that pair only matters
    /// when consecutive days match).
    fn smallest_gap_minutes(&self) -> Option<u32> {
        let minutes: Vec<u32> = self
            .times_of_day()
            .iter()
            .map(|t| t.hour() * 60 + t.minute())
            .collect();
        let (first, last) = (*minutes.first()?, *minutes.last()?);
        let wrap = first + 24 * 60 - last;
        let inner = minutes.windows(2).map(|pair| pair[1] - pair[0]).min();
        Some(inner.map_or(wrap, |inner| inner.min(wrap)))
    }

    fn matches_date(&self, date: NaiveDate) -> bool {
        self.day_of_month.matches(date) && self.day_of_week.matches(date)
    }

    fn next_runs(
        &self,
        n: usize,
        after: DateTime<Utc>,
        tz: Tz,
        offset_days: u32,
    ) -> Vec<DateTime<Tz>> {
        let times = self.times_of_day();
        let mut runs: Vec<DateTime<Tz>> = Vec::with_capacity(n);
        // Start two local days early: a match resolved out of a DST gap moves forward in time.
        let Some(start) = after
            .with_timezone(&tz)
            .date_naive()
            .checked_sub_days(Days::new(2))
        else {
            return runs;
        };
        for year in start.year()..=CronField::Year.max() as i32 {
            if !u32::try_from(year).is_ok_and(|y| self.year.contains(y)) {
                continue;
            }
            for month in 1..=12 {
                if !self.month.contains(month) || (year, month) < (start.year(), start.month()) {
                    continue;
                }
                let Some(last_day) = days_in_month(year, month) else {
                    continue;
                };
                for day in 1..=last_day {
                    let Some(date) = NaiveDate::from_ymd_opt(year, month, day) else {
                        continue;
                    };
                    if date < start || !self.matches_date(date) {
                        continue;
                    }
                    let run_date = date.checked_add_days(Days::new(u64::from(offset_days)));
                    for time in &times {
                        let Some(matched) = resolve_local(tz, date.and_time(*time)) else {
                            continue;
                        };
                        if matched.with_timezone(&Utc) <= after {
                            continue;
                        }
                        let Some(run) = run_date.and_then(|d| resolve_local(tz, d.and_time(*time)))
                        else {
                            continue;
                        };
                        if runs.last().is_some_and(|last| run <= *last) {
                            continue;
                        }
                        runs.push(run);
                        if runs.len() == n {
                            return runs;
                        }
                    }
                }
            }
        }
        runs
    }
}

fn parse_seconds(token: &str) -> Result<u32, ScheduleError> {
    // Anything but a single value would run more often than every 5 minutes.
    if !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(field_error(
            CronField::Seconds,
            token,
            "only a single value is supported (more would run faster than every 5 minutes)",
        ));
    }
    parse_value(CronField::Seconds, token, token)
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(seconds) = self.seconds {
            write!(f, "{seconds} ")?;
        }
        write!(
            f,
            "{} {} {} {} {} {}",
            self.minutes, self.hours, self.day_of_month, self.month, self.day_of_week, self.year
        )
    }
}

// ---------------------------------------------------------------------------------------------
// rate and at

impl Rate {
    fn parse(expr: &str, inner: &str) -> Result<Rate, ScheduleError> {
        let error = |problem: String| ScheduleError::InvalidRate {
            expr: expr.to_string(),
            problem,
        };
        let tokens: Vec<&str> = inner.split_whitespace().collect();
        let [value, unit] = tokens.as_slice() else {
            return Err(error(format!(
                "expected 2 fields (Value Unit), found {}",
                tokens.len()
            )));
        };
        let value: u32 = match value.parse() {
            Ok(v) if v > 0 && value.bytes().all(|b| b.is_ascii_digit()) => v,
            _ => {
                return Err(error(format!(
                    "Value `{value}` must be a positive whole number"
                )))
            }
        };
        let (unit, singular) = match *unit {
            "minute" => (RateUnit::Minutes, true),
            "minutes" => (RateUnit::Minutes, false),
            "hour" => (RateUnit::Hours, true),
            "hours" => (RateUnit::Hours, false),
            "day" => (RateUnit::Days, true),
            "days" => (RateUnit::Days, false),
            other => return Err(error(format!("unknown Unit `{other}`"))),
        };
        if singular != (value == 1) {
            return Err(error(if value == 1 {
                "a Value of 1 takes a singular Unit (minute, hour, day)".to_string()
            } else {
                format!("a Value of {value} takes a plural Unit (minutes, hours, days)")
            }));
        }
        // The User Guide states the 5-minute floor for cron expressions; we apply the same
        // floor to rates so that both forms accept the same frequencies.
        if unit == RateUnit::Minutes && value < MIN_INTERVAL_MINUTES {
            return Err(error(format!(
                "every {value} minute(s) is faster than every 5 minutes"
            )));
        }
        Ok(Rate { value, unit })
    }

    fn next_runs(&self, n: usize, after: DateTime<Utc>, tz: Tz) -> Vec<DateTime<Tz>> {
        let step = match self.unit {
            RateUnit::Minutes => Duration::minutes(i64::from(self.value)),
            RateUnit::Hours => Duration::hours(i64::from(self.value)),
            RateUnit::Days => return self.next_daily_runs(n, after, tz),
        };
        std::iter::successors(after.checked_add_signed(step), |t| {
            t.checked_add_signed(step)
        })
        .take(n)
        .map(|t| t.with_timezone(&tz))
        .collect()
    }

    fn next_daily_runs(&self, n: usize, after: DateTime<Utc>, tz: Tz) -> Vec<DateTime<Tz>> {
        let anchor = after.with_timezone(&tz).naive_local();
        let mut runs: Vec<DateTime<Tz>> = Vec::with_capacity(n);
        let mut k: u64 = 1;
        while runs.len() < n {
            let Some(local) = u64::from(self.value)
                .checked_mul(k)
                .and_then(|days| anchor.checked_add_days(Days::new(days)))
            else {
                break;
            };
            k += 1;
            let Some(run) = resolve_local(tz, local) else {
                continue;
            };
            if run.with_timezone(&Utc) > after && runs.last().is_none_or(|last| run > *last) {
                runs.push(run);
            }
        }
        runs
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            RateUnit::Minutes => "minute",
            RateUnit::Hours => "hour",
            RateUnit::Days => "day",
        };
        let plural = if self.value == 1 { "" } else { "s" };
        write!(f, "{} {unit}{plural}", self.value)
    }
}

fn parse_at(expr: &str, inner: &str) -> Result<NaiveDateTime, ScheduleError> {
    let error = |problem: &str| ScheduleError::InvalidAt {
        expr: expr.to_string(),
        problem: problem.to_string(),
    };
    // chrono alone would also take single-digit fields; SSM documents the fixed layout.
    let shape_ok = inner.len() == 19
        && inner.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(error("expected the layout yyyy-mm-ddThh:mm:ss"));
    }
    NaiveDateTime::parse_from_str(inner, "%Y-%m-%dT%H:%M:%S")
        .map_err(|_| error("not a valid calendar date and time"))
}

// ---------------------------------------------------------------------------------------------
// calendar helpers

/// AWS day-of-week number: 1 = Sunday ... 7 = Saturday.
fn aws_weekday(date: NaiveDate) -> u32 {
    date.weekday().num_days_from_sunday() + 1
}

fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = first.checked_add_months(chrono::Months::new(1))?;
    u32::try_from(next.signed_duration_since(first).num_days()).ok()
}

/// `nW`: day n if it is Mon-Fri; a Saturday moves to Friday and a Sunday to Monday, without
/// leaving the month (Saturday the 1st -> Monday the 3rd, Sunday the last -> the Friday before).
/// Months shorter than n have no match, like a plain day value.
fn nearest_weekday(year: i32, month: u32, day: u32) -> Option<u32> {
    let last = days_in_month(year, month)?;
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    Some(match aws_weekday(date) {
        7 if day > 1 => day - 1,
        7 => day + 2,
        1 if day < last => day + 1,
        1 => day - 2,
        _ => day,
    })
}

/// A local wall-clock time in `tz` as an instant: ambiguous (fall-back) times take the first
/// occurrence; times inside a spring-forward gap take the first valid instant after them.
fn resolve_local(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Tz>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t),
        LocalResult::Ambiguous(first, second) => Some(first.min(second)),
        LocalResult::None => {
            // Transitions happen on whole minutes; the longest gap in tzdata is a day
            // (Pacific/Apia skipped 2011-12-30), so two days of minutes is a safe bound.
            let start = local.with_second(0)?.with_nanosecond(0)?;
            (1..=2 * 24 * 60).find_map(|m| {
                let candidate = start.checked_add_signed(Duration::minutes(m))?;
                tz.from_local_datetime(&candidate).earliest()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zurich() -> Tz {
        parse_timezone("Europe/Zurich").unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn parse(expr: &str) -> Schedule {
        Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    /// Runs as local `yyyy-mm-dd hh:mm` strings.
    fn local_runs(expr: &str, n: usize, after: &str, tz: Tz, offset: u32) -> Vec<String> {
        parse(expr)
            .next_runs(n, utc(after), tz, offset)
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .collect()
    }

    fn utc_runs(expr: &str, n: usize, after: &str, tz: Tz) -> Vec<String> {
        parse(expr)
            .next_runs(n, utc(after), tz, 0)
            .iter()
            .map(|t| t.with_timezone(&Utc).format("%Y-%m-%dT%H:%MZ").to_string())
            .collect()
    }

    fn dates_at(time: &str, days: &[&str]) -> Vec<String> {
        days.iter().map(|d| format!("{d} {time}")).collect()
    }

    fn rejected(expr: &str) -> ScheduleError {
        match Schedule::parse(expr) {
            Ok(s) => panic!("{expr} was accepted as {s:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn every_first_saturday_of_2027_at_six_in_zurich() {
        let runs = local_runs(
            "cron(0 6 ? * SAT#1 *)",
            12,
            "2026-12-31T23:00:00Z",
            zurich(),
            0,
        );
        // From the 2027 calendar: the first Saturday of each month.
        let expected = dates_at(
            "06:00",
            &[
                "2027-01-02",
                "2027-02-06",
                "2027-03-06",
                "2027-04-03",
                "2027-05-01",
                "2027-06-05",
                "2027-07-03",
                "2027-08-07",
                "2027-09-04",
                "2027-10-02",
                "2027-11-06",
                "2027-12-04",
            ],
        );
        assert_eq!(runs, expected);
    }

    #[test]
    fn every_third_saturday_of_2027_at_six_in_zurich() {
        let runs = local_runs(
            "cron(0 6 ? * SAT#3 *)",
            12,
            "2026-12-31T23:00:00Z",
            zurich(),
            0,
        );
        let expected = dates_at(
            "06:00",
            &[
                "2027-01-16",
                "2027-02-20",
                "2027-03-20",
                "2027-04-17",
                "2027-05-15",
                "2027-06-19",
                "2027-07-17",
                "2027-08-21",
                "2027-09-18",
                "2027-10-16",
                "2027-11-20",
                "2027-12-18",
            ],
        );
        assert_eq!(runs, expected);
    }

    #[test]
    fn numeric_weekday_7_is_saturday_like_the_name() {
        assert_eq!(
            local_runs(
                "cron(0 6 ? * 7#3 2027)",
                3,
                "2027-01-01T00:00:00Z",
                zurich(),
                0
            ),
            local_runs(
                "cron(0 6 ? * SAT#3 2027)",
                3,
                "2027-01-01T00:00:00Z",
                zurich(),
                0
            ),
        );
    }

    #[test]
    fn saturday_six_am_follows_summer_time_in_utc() {
        // 06:00 in Zurich is 05:00 UTC in winter (CET) and 04:00 UTC in summer (CEST).
        let runs = utc_runs("cron(0 6 ? * SAT#1 *)", 4, "2027-02-01T00:00:00Z", zurich());
        assert_eq!(
            runs,
            [
                "2027-02-06T05:00Z",
                "2027-03-06T05:00Z",
                "2027-04-03T04:00Z",
                "2027-05-01T04:00Z"
            ]
        );
    }

    #[test]
    fn spring_forward_02_30_runs_at_03_00_summer_time() {
        // Europe/Zurich jumps from 02:00 CET to 03:00 CEST on 2027-03-28: 02:30 doesn't exist.
        let runs = utc_runs("cron(30 2 ? * SUN *)", 3, "2027-03-20T00:00:00Z", zurich());
        assert_eq!(
            runs,
            [
                "2027-03-21T01:30Z", // 02:30 CET
                "2027-03-28T01:00Z", // gap -> 03:00 CEST, the first valid instant
                "2027-04-04T00:30Z", // 02:30 CEST
            ]
        );
        let local = local_runs(
            "cron(30 2 28 3 ? 2027)",
            1,
            "2027-01-01T00:00:00Z",
            zurich(),
            0,
        );
        assert_eq!(local, ["2027-03-28 03:00"]);
    }

    #[test]
    fn fall_back_02_30_runs_once_at_the_first_occurrence() {
        // On 2027-10-31 Zurich goes from 03:00 CEST back to 02:00 CET: 02:30 happens twice.
        let runs = utc_runs("cron(30 2 ? * SUN *)", 2, "2027-10-30T00:00:00Z", zurich());
        assert_eq!(runs, ["2027-10-31T00:30Z", "2027-11-07T01:30Z"]);
    }

    #[test]
    fn half_hourly_runs_skip_the_repeated_hour_and_collapse_the_missing_one() {
        let fall = utc_runs(
            "cron(0,30 1-3 31 10 ? 2027)",
            10,
            "2027-10-30T00:00:00Z",
            zurich(),
        );
        assert_eq!(
            fall,
            [
                "2027-10-30T23:00Z", // 01:00 CEST
                "2027-10-30T23:30Z",
                "2027-10-31T00:00Z", // 02:00 CEST (first occurrence)
                "2027-10-31T00:30Z", // 02:30 CEST; 02:00/02:30 CET don't run again
                "2027-10-31T02:00Z", // 03:00 CET
                "2027-10-31T02:30Z",
            ]
        );
        let spring = utc_runs(
            "cron(0,30 1-3 28 3 ? 2027)",
            10,
            "2027-03-27T00:00:00Z",
            zurich(),
        );
        assert_eq!(
            spring,
            [
                "2027-03-28T00:00Z", // 01:00 CET
                "2027-03-28T00:30Z",
                "2027-03-28T01:00Z", // 02:00, 02:30 and 03:00 all land on 03:00 CEST, once
                "2027-03-28T01:30Z", // 03:30 CEST
            ]
        );
    }

    #[test]
    fn fifth_saturday_skips_months_that_have_none() {
        let runs = local_runs(
            "cron(0 6 ? * SAT#5 *)",
            5,
            "2027-01-01T00:00:00Z",
            zurich(),
            0,
        );
        // 2027 has five Saturdays only in January, May, July and October.
        let mut expected = dates_at(
            "06:00",
            &["2027-01-30", "2027-05-29", "2027-07-31", "2027-10-30"],
        );
        expected.push("2028-01-29 06:00".to_string());
        assert_eq!(runs, expected);
    }

    #[test]
    fn patch_tuesday_plus_four_days_is_the_saturday_after() {
        let runs =
            parse("cron(0 22 ? * TUE#2 *)").next_runs(12, utc("2027-01-01T00:00:00Z"), zurich(), 4);
        let days: Vec<String> = runs
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .collect();
        let expected = dates_at(
            "22:00",
            &[
                "2027-01-16",
                "2027-02-13",
                "2027-03-13",
                "2027-04-17",
                "2027-05-15",
                "2027-06-12",
                "2027-07-17",
                "2027-08-14",
                "2027-09-18",
                "2027-10-16",
                "2027-11-13",
                "2027-12-18",
            ],
        );
        assert_eq!(days, expected);
        assert!(runs.iter().all(|t| t.weekday() == chrono::Weekday::Sat));
    }

    #[test]
    fn offset_run_is_skipped_when_its_cron_date_has_passed() {
        // Patch Tuesday 2027-01-12 22:00 is past at 23:00; its Saturday run is not scheduled.
        let runs = local_runs(
            "cron(0 22 ? * TUE#2 *)",
            1,
            "2027-01-12T22:00:00Z",
            zurich(),
            4,
        );
        assert_eq!(runs, ["2027-02-13 22:00"]);
    }

    #[test]
    fn offset_is_only_for_cron_and_at_most_six_days() {
        let cron = parse("cron(0 22 ? * TUE#2 *)");
        assert_eq!(cron.check_offset(0), Ok(()));
        assert_eq!(cron.check_offset(6), Ok(()));
        assert_eq!(
            cron.check_offset(7),
            Err(ScheduleError::OffsetOutOfRange { days: 7 })
        );
        let rate = parse("rate(1 day)");
        assert!(matches!(
            rate.check_offset(2),
            Err(ScheduleError::OffsetNeedsCron { days: 2, .. })
        ));
        assert!(rate
            .next_runs(3, utc("2027-01-01T00:00:00Z"), zurich(), 2)
            .is_empty());
        assert!(cron
            .next_runs(3, utc("2027-01-01T00:00:00Z"), zurich(), 7)
            .is_empty());
    }

    #[test]
    fn last_day_of_month_handles_february_and_leap_years() {
        let runs = local_runs("cron(0 2 L * ? *)", 4, "2027-01-15T00:00:00Z", zurich(), 0);
        assert_eq!(
            runs,
            dates_at(
                "02:00",
                &["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]
            )
        );
        let leap = local_runs("cron(0 2 L 2 ? *)", 2, "2027-01-01T00:00:00Z", zurich(), 0);
        assert_eq!(leap, dates_at("02:00", &["2027-02-28", "2028-02-29"]));
    }

    #[test]
    fn last_friday_of_every_month() {
        let runs = local_runs(
            "cron(15 10 ? * 6L *)",
            4,
            "2027-01-01T00:00:00Z",
            zurich(),
            0,
        );
        assert_eq!(
            runs,
            dates_at(
                "10:15",
                &["2027-01-29", "2027-02-26", "2027-03-26", "2027-04-30"]
            )
        );
    }

    #[test]
    fn nearest_weekday_moves_weekends_without_leaving_the_month() {
        // 2027-05-15 is a Saturday -> Friday 14th; 2027-08-15 is a Sunday -> Monday 16th.
        let mid = local_runs(
            "cron(0 3 15W * ? 2027)",
            12,
            "2027-01-01T00:00:00Z",
            zurich(),
            0,
        );
        assert!(mid.contains(&"2027-05-14 03:00".to_string()));
        assert!(mid.contains(&"2027-08-16 03:00".to_string()));
        assert!(mid.contains(&"2027-01-15 03:00".to_string()));
        // 2027-05-01 is a Saturday -> Monday 3rd, not Friday 30 April.
        let first = local_runs(
            "cron(0 3 1W 5 ? 2027)",
            1,
            "2027-01-01T00:00:00Z",
            zurich(),
            0,
        );
        assert_eq!(first, ["2027-05-03 03:00"]);
        // 2027-01-31 is a Sunday -> Friday 29th, not Monday 1 February.
        let last = local_runs(
            "cron(0 3 31W 1 ? 2027)",
            1,
            "2027-01-01T00:00:00Z",
            zurich(),
            0,
        );
        assert_eq!(last, ["2027-01-29 03:00"]);
    }

    #[test]
    fn weekday_ranges_lists_and_steps() {
        let weekdays = local_runs(
            "cron(0 18 ? * MON-FRI *)",
            6,
            "2027-01-01T00:00:00Z",
            zurich(),
            0,
        );
        assert_eq!(
            weekdays,
            dates_at(
                "18:00",
                &[
                    "2027-01-01",
                    "2027-01-04",
                    "2027-01-05",
                    "2027-01-06",
                    "2027-01-07",
                    "2027-01-08"
                ]
            )
        );
        let quarter_hours = local_runs(
            "cron(*/15 8 1 JAN,JUL ? 2027)",
            5,
            "2027-01-01T00:00:00Z",
            zurich(),
            0,
        );
        assert_eq!(
            quarter_hours,
            [
                "2027-01-01 08:00",
                "2027-01-01 08:15",
                "2027-01-01 08:30",
                "2027-01-01 08:45",
                "2027-07-01 08:00"
            ]
        );
        let stepped = local_runs(
            "cron(10 1-9/4 ? * sun 2027)",
            3,
            "2027-01-01T00:00:00Z",
            zurich(),
            0,
        );
        assert_eq!(
            stepped,
            ["2027-01-03 01:10", "2027-01-03 05:10", "2027-01-03 09:10"]
        );
    }

    #[test]
    fn seven_fields_carry_seconds() {
        let schedule = parse("cron(24 30 09 ? * * *)");
        let runs = schedule.next_runs(1, utc("2027-01-01T00:00:00Z"), zurich(), 0);
        assert_eq!(
            runs[0].format("%Y-%m-%d %H:%M:%S").to_string(),
            "2027-01-01 09:30:24"
        );
        assert_eq!(schedule.fixed_time(), Some((9, 30)));
        assert_eq!(schedule.to_string(), "cron(24 30 9 ? * * *)");
    }

    #[test]
    fn rate_one_day_keeps_the_local_time_across_dst() {
        let runs = local_runs("rate(1 day)", 3, "2027-03-26T22:00:00Z", zurich(), 0);
        // 23:00 CET on the 26th -> 23:00 every day, although the 28th is 23 hours long.
        assert_eq!(
            runs,
            ["2027-03-27 23:00", "2027-03-28 23:00", "2027-03-29 23:00"]
        );
    }

    #[test]
    fn rate_two_hours_is_elapsed_time() {
        let runs = utc_runs("rate(2 hours)", 3, "2027-03-28T00:00:00Z", zurich());
        assert_eq!(
            runs,
            [
                "2027-03-28T02:00Z",
                "2027-03-28T04:00Z",
                "2027-03-28T06:00Z"
            ]
        );
        assert_eq!(parse("rate(2 hours)").fixed_time(), None);
    }

    #[test]
    fn at_runs_once_at_the_utc_timestamp() {
        let schedule = parse("at(2027-07-07T15:55:00)");
        let runs = schedule.next_runs(3, utc("2027-01-01T00:00:00Z"), zurich(), 0);
        assert_eq!(runs.len(), 1);
        assert_eq!(
            runs[0].format("%Y-%m-%d %H:%M %:z").to_string(),
            "2027-07-07 17:55 +02:00"
        );
        assert!(schedule
            .next_runs(3, utc("2027-07-07T15:55:00Z"), zurich(), 0)
            .is_empty());
        assert_eq!(schedule.fixed_time(), Some((15, 55)));
    }

    #[test]
    fn fixed_time_only_for_a_single_hour_and_minute() {
        assert_eq!(parse("cron(0 6 ? * SAT#1 *)").fixed_time(), Some((6, 0)));
        assert_eq!(parse("cron(0 6,18 ? * SAT *)").fixed_time(), None);
        assert_eq!(parse("cron(0/30 6 ? * SAT *)").fixed_time(), None);
    }

    #[test]
    fn display_is_canonical_and_parses_back() {
        for (input, canonical) in [
            ("cron(0 6 ? * sat#1 *)", "cron(0 6 ? * SAT#1 *)"),
            ("cron(0 22 ? * 3#2 *)", "cron(0 22 ? * TUE#2 *)"),
            (
                "cron(0/15 08-17 ? 1-3,dec mon-fri 2027-2030/2)",
                "cron(0/15 8-17 ? JAN-MAR,DEC MON-FRI 2027-2030/2)",
            ),
            ("cron(0 2 L * ? *)", "cron(0 2 L * ? *)"),
            ("cron(0 2 15W * ? *)", "cron(0 2 15W * ? *)"),
            ("cron(15 10 ? * 6L *)", "cron(15 10 ? * 6L *)"),
            ("cron(*/30 * * * ? *)", "cron(*/30 * * * ? *)"),
            ("rate(1 day)", "rate(1 day)"),
            ("rate( 30   minutes )", "rate(30 minutes)"),
            ("at(2027-07-07T15:55:00)", "at(2027-07-07T15:55:00)"),
        ] {
            let schedule = parse(input);
            assert_eq!(schedule.to_string(), canonical, "{input}");
            assert_eq!(parse(canonical), schedule, "{canonical}");
        }
    }

    #[test]
    fn rejects_five_field_cron() {
        assert_eq!(
            rejected("cron(0 6 * * SAT)"),
            ScheduleError::FieldCount { found: 5 }
        );
        assert_eq!(
            rejected("cron(0 0 6 * * SAT 2027 1)"),
            ScheduleError::FieldCount { found: 8 }
        );
    }

    #[test]
    fn rejects_values_in_both_day_fields() {
        let error = rejected("cron(0 6 1 * SAT *)");
        assert!(matches!(error, ScheduleError::DayFields { .. }), "{error}");
        assert!(error.to_string().contains("`?` in the other"));
        assert!(matches!(
            rejected("cron(0 6 * * * *)"),
            ScheduleError::DayFields { .. }
        ));
    }

    #[test]
    fn rejects_question_mark_in_both_day_fields() {
        let error = rejected("cron(0 6 ? * ? *)");
        assert!(error.to_string().contains("both are `?`"), "{error}");
    }

    #[test]
    fn rejects_unknown_names() {
        let error = rejected("cron(0 6 ? * SATURDAY *)");
        assert_eq!(
            error,
            ScheduleError::InvalidField {
                field: CronField::DayOfWeek,
                token: "SATURDAY".to_string(),
                problem: "`SATURDAY` is not a number or a name".to_string(),
            }
        );
        assert!(error.to_string().contains("SUN-SAT"));
        assert!(matches!(
            rejected("cron(0 6 1 JANUARY ? *)"),
            ScheduleError::InvalidField {
                field: CronField::Month,
                ..
            }
        ));
        // Names belong to month and day-of-week only.
        assert!(matches!(
            rejected("cron(0 6 MON * ? *)"),
            ScheduleError::InvalidField {
                field: CronField::DayOfMonth,
                ..
            }
        ));
    }

    #[test]
    fn rejects_out_of_range_values() {
        for (expr, field) in [
            ("cron(60 6 ? * SAT *)", CronField::Minutes),
            ("cron(0 24 ? * SAT *)", CronField::Hours),
            ("cron(0 6 32 * ? *)", CronField::DayOfMonth),
            ("cron(0 6 0 * ? *)", CronField::DayOfMonth),
            ("cron(0 6 1 13 ? *)", CronField::Month),
            ("cron(0 6 ? * 0 *)", CronField::DayOfWeek),
            ("cron(0 6 ? * 8 *)", CronField::DayOfWeek),
            ("cron(0 6 ? * SAT#6 *)", CronField::DayOfWeek),
            ("cron(0 6 ? * SAT#0 *)", CronField::DayOfWeek),
            ("cron(0 6 ? * SAT 1969)", CronField::Year),
            ("cron(0 6 ? * SAT 2200)", CronField::Year),
            ("cron(0 6 ? * SAT-MON *)", CronField::DayOfWeek),
            ("cron(0/0 6 ? * SAT *)", CronField::Minutes),
            ("cron(0 6 ? * SAT#1,SAT#3 *)", CronField::DayOfWeek),
            ("cron(0 6 L,15 * ? *)", CronField::DayOfMonth),
        ] {
            match rejected(expr) {
                ScheduleError::InvalidField { field: f, .. } => assert_eq!(f, field, "{expr}"),
                other => panic!("{expr}: {other}"),
            }
        }
        let error = rejected("cron(0 24 ? * SAT *)");
        assert_eq!(
            error.to_string(),
            "Hours `24`: 24 is out of range 0-23; allowed: 0-23 with , - * /"
        );
    }

    #[test]
    fn rejects_schedules_faster_than_five_minutes() {
        assert_eq!(
            rejected("cron(* * ? * SAT *)"),
            ScheduleError::TooFrequent { minutes: 1 }
        );
        assert_eq!(
            rejected("cron(0/4 * ? * SAT *)"),
            ScheduleError::TooFrequent { minutes: 4 }
        );
        assert_eq!(
            rejected("cron(0,58 0,23 ? * * *)"),
            ScheduleError::TooFrequent { minutes: 2 }
        );
        assert!(Schedule::parse("cron(0/5 8-17 ? * MON-FRI *)").is_ok());
    }

    #[test]
    fn rejects_zero_and_too_fast_rates_and_wrong_plurals() {
        for expr in [
            "rate(0 hours)",
            "rate(1 hours)",
            "rate(5 hour)",
            "rate(1 minutes)",
            "rate(1 minute)",
            "rate(4 minutes)",
            "rate(-2 hours)",
            "rate(2 weeks)",
            "rate(2)",
            "rate(two hours)",
        ] {
            assert!(
                matches!(rejected(expr), ScheduleError::InvalidRate { .. }),
                "{expr}"
            );
        }
        assert!(rejected("rate(1 hours)")
            .to_string()
            .contains("singular Unit"));
        assert!(Schedule::parse("rate(5 minutes)").is_ok());
        assert!(Schedule::parse("rate(1 hour)").is_ok());
    }

    #[test]
    fn seconds_field_takes_only_a_single_value() {
        for expr in [
            "cron(* 0 6 ? * SAT *)",
            "cron(0/10 0 6 ? * SAT *)",
            "cron(60 0 6 ? * SAT *)",
        ] {
            assert!(
                matches!(
                    rejected(expr),
                    ScheduleError::InvalidField {
                        field: CronField::Seconds,
                        ..
                    }
                ),
                "{expr}"
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(rejected("   "), ScheduleError::Empty);
        for expr in [
            "every saturday",
            "cron 0 6 ? * SAT *",
            "cron(0 6 ? * SAT *",
            "CRON(0 6 ? * SAT *)",
            "weekly(SAT)",
        ] {
            assert!(
                matches!(rejected(expr), ScheduleError::UnknownForm { .. }),
                "{expr}"
            );
        }
        assert!(matches!(
            rejected("cron(0 6 ? * SAT# *)"),
            ScheduleError::InvalidField { .. }
        ));
        assert!(matches!(
            rejected("cron()"),
            ScheduleError::FieldCount { found: 0 }
        ));
        for expr in [
            "at(2027-7-7T15:55:00)",
            "at(2027-02-30T15:55:00)",
            "at(2027-07-07 15:55:00)",
            "at(2027-07-07T15:55:00Z)",
        ] {
            assert!(
                matches!(rejected(expr), ScheduleError::InvalidAt { .. }),
                "{expr}"
            );
        }
    }

    #[test]
    fn unknown_timezone_names_the_zone_and_suggests_iana() {
        let error = parse_timezone("Europe/Zürich").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown time zone `Europe/Zürich`; use an IANA name like Europe/Zurich or Etc/UTC"
        );
        assert_eq!(parse_timezone("Etc/UTC"), Ok(chrono_tz::Etc::UTC));
        assert!(parse_timezone("").is_err());
    }

    #[test]
    fn a_schedule_that_never_matches_ends_the_search() {
        // 31 February never exists; the search stops at 2199 instead of looping.
        let runs =
            parse("cron(0 6 31 2 ? *)").next_runs(1, utc("2027-01-01T00:00:00Z"), zurich(), 0);
        assert!(runs.is_empty());
        let past =
            parse("cron(0 6 1 1 ? 2020)").next_runs(1, utc("2027-01-01T00:00:00Z"), zurich(), 0);
        assert!(past.is_empty());
    }
}
