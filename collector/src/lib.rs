//! The plowline edge: everything that defines what a tracker hit looks like before enrichment.
//!
//! - [`logformat`]: the access-log format, defined once. The canonical plowline format is rendered
//!   into nginx `log_format` syntax and parsed back; any other nginx `log_format` string (and
//!   nginx `combined`) compiles into a parser too.
//! - [`tracker`]: the Snowplow tracker protocol (tp1 query strings, tp2 `payload_data` bodies)
//!   decoded into typed raw events.
//! - [`nginx`]: the production nginx config for the tracker endpoint.
//! - [`uid`]: the first-party network-user-id cookie, as nginx's `userid` module writes it.
//!
//! The library does no I/O: every function here is pure and works over borrowed input.

pub mod civil;
mod hex;
pub mod logformat;
pub mod nginx;
mod swar;
pub mod tracker;
pub mod uid;
