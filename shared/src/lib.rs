//! patchpilot's shared library: the domain (policy, names, schedules, classification,
//! planning, reports — pure and synchronous) and the AWS edge (`aws`, the only code that
//! touches SDK types).

pub mod aws;
pub mod classify;
pub mod console;
pub mod coverage;
pub mod coverage_notice;
pub mod eventpattern;
pub mod failure;
pub mod fleet;
pub mod logging;
pub mod names;
pub mod permissions;
pub mod plan;
pub mod policy;
pub mod promotion;
pub mod report;
pub mod schedule;
pub mod settings;
pub mod suggest;
pub mod sync;
pub mod wording;
