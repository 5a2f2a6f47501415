//! herd: Node.js's `cluster` module for Linux.
#![deny(missing_docs)]

pub mod http;
pub mod load;
