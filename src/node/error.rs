//! [`ProtocolError`]: why a line from a Node worker cannot be taken (the worker is then
//! killed and replaced: it is broken, or not a Node worker).

use std::fmt;

/// Why a line from a worker cannot be taken: the worker is broken or not a Node worker.
/// Every case but [`ProtocolError::UnknownCmd`] means the link can no longer be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A line longer than the reader's limit (no `\n` within it).
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The line is not one JSON value.
    NotJson {
        /// serde_json's reason, with the column.
        reason: String,
        /// The start of the line, for the log.
        excerpt: String,
    },
    /// A `NODE_` message herd does not know (none that Node v4–v20 sends).
    UnknownCmd(String),
    /// A `NODE_CLUSTER` message with an `act` herd does not know.
    UnknownAct(String),
    /// A known message with a field missing or of the wrong type.
    BadField {
        /// The message (`queryServer`, `NODE_HANDLE`, …).
        message: String,
        /// The field.
        field: &'static str,
    },
}

impl ProtocolError {
    pub(super) fn not_json(text: &str, e: &serde_json::Error) -> ProtocolError {
        ProtocolError::NotJson {
            reason: e.to_string(),
            excerpt: ProtocolError::excerpt(text.as_bytes()),
        }
    }

    /// The first 60 bytes of a line, lossily as text.
    pub(super) fn excerpt(bytes: &[u8]) -> String {
        String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned()
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::LineTooLong { limit } => {
                write!(f, "a message longer than {limit} bytes")
            }
            ProtocolError::NotJson { reason, excerpt } => {
                write!(f, "a line that is not JSON ({reason}): {excerpt:?}")
            }
            ProtocolError::UnknownCmd(cmd) => write!(f, "unknown internal message {cmd:?}"),
            ProtocolError::UnknownAct(act) => write!(f, "unknown cluster act {act:?}"),
            ProtocolError::BadField { message, field } => {
                write!(f, "{message}: field `{field}` missing or of the wrong type")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}
