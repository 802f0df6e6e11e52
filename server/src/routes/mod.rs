//! HTTP routes, grouped by who calls them.

pub mod enroll;
pub mod meta;
pub mod node;
pub mod operator;
pub mod watch;
