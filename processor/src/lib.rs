//! plow-processor: turns access-log lines into tracker events.
//!
//! Today it holds [`inspect`], which shows what the collector library reads from each line; the
//! enrichments, the bad-row router and the loaders build on it.

pub mod event;
pub mod inspect;
