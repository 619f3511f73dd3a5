//! The crate's one error type, [`Error`], and its [`Result`] alias.
//!
//! Handlers return `edge_sdk::Result<impl IntoResponse>` and can use `?` on
//! session reads, JSON (de)serialisation, I/O and UTF-8 conversions. An error
//! that leaves a handler becomes a 500 answer; nothing the call buffered is
//! written and the session's lock is released at once.
//!
//! ```
//! fn parse_count(raw: &str) -> edge_sdk::Result<u64> {
//!     raw.trim().parse().map_err(|e| edge_sdk::Error::custom(format!("bad count {raw:?}: {e}")))
//! }
//! assert!(parse_count("12").is_ok());
//! assert!(parse_count("x").is_err());
//! ```

use std::fmt;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `edge-sdk`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The hierarchy file is not valid JSON.
    #[error("hierarchy file is not valid JSON at line {line}, column {column}: {message}")]
    HierarchySyntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser expected.
        message: String,
    },

    /// The hierarchy file is valid JSON but breaks rules of the hierarchy
    /// format; every problem found is listed.
    #[error("invalid hierarchy: {}", HierarchyProblems(.0))]
    InvalidHierarchy(Vec<HierarchyProblem>),

    /// A node name that the hierarchy does not contain.
    #[error("no node named {0:?} in the hierarchy")]
    UnknownNode(String),

    /// A level name that is not one of `areaTypesIdentifiers`.
    #[error("no level named {0:?} in areaTypesIdentifiers")]
    UnknownLevel(String),

    /// A required environment variable or secret is missing or malformed.
    #[error("configuration error in {name}: {message}")]
    Config {
        /// The variable or secret file at fault, e.g. `EDGE_LOCATION`.
        name: String,
        /// What is wrong with it and what is expected.
        message: String,
    },

    /// The node's Redis could not be reached or answered with an error.
    #[cfg(feature = "runtime")]
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),

    /// A stored value has another type than the one asked for (for example
    /// `get_list` on a key that holds a string).
    #[error("session key {key:?} holds {found}, not {expected}")]
    WrongType {
        /// The session key.
        key: String,
        /// The type asked for.
        expected: &'static str,
        /// The type stored.
        found: &'static str,
    },

    /// The session moved to another node while a read-only call was reading
    /// it; the call is answered with a redirect.
    #[error("session moved to node {location:?} during the call")]
    SessionMoved {
        /// The node that holds the session now.
        location: String,
    },

    /// A commit landed between two reads of a read-only call, so the values
    /// it read would not belong to one state of the session.
    #[error("session changed while this read-only call was reading it; retry")]
    SessionChanged,

    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// An I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),

    /// Bytes that should have been UTF-8 were not.
    #[error("invalid UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),

    /// An error raised by a handler with [`Error::custom`].
    #[error("{0}")]
    Custom(String),
}

impl Error {
    /// An error with a message of your own, for use in handlers (and by the
    /// client).
    pub fn custom(message: impl fmt::Display) -> Self {
        Error::Custom(message.to_string())
    }

    #[cfg(feature = "runtime")]
    pub(crate) fn config(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            name: name.into(),
            message: message.into(),
        }
    }
}

/// One rule of the hierarchy format broken by one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HierarchyProblem {
    /// Path of the node from the root, e.g. `italy/milan`; empty for problems
    /// of the whole file (such as a missing `hierarchy` array).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for HierarchyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

struct HierarchyProblems<'a>(&'a [HierarchyProblem]);

impl fmt::Display for HierarchyProblems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[cfg(feature = "runtime")]
impl From<edge_store::Error> for Error {
    fn from(error: edge_store::Error) -> Error {
        match error {
            edge_store::Error::Redis(error) => Error::Redis(error),
            other => Error::custom(other.to_string()),
        }
    }
}
