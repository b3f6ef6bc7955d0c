//! Changes to the running rule sets, applied by the pipeline between two
//! batches: a batch in flight finishes on the version it started with.

use crate::runtime::Rule;

/// The answer to a change: what was done, or why it was refused.
pub type Outcome = Result<String, Refusal>;

/// Why a change was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No rule set of that name is loaded.
    Unknown(String),
    /// The change is not possible; the message says why and what to do.
    Invalid(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown(name) => write!(f, "no rule set named {name:?} is loaded"),
            Self::Invalid(message) => f.write_str(message),
        }
    }
}

/// Where the pipeline sends the outcome of a change.
pub type Reply = tokio::sync::oneshot::Sender<Outcome>;

/// A change to the running rule sets.
pub enum Update {
    /// A loaded and initialised rule set: a new version of a running one
    /// (swapped in, with its keyed state and open windows), or a new one.
    Load {
        /// The rule set, compiled, validated and `init`ed off the hot path.
        rule: Box<Rule>,
        /// Where to answer.
        reply: Option<Reply>,
    },
    /// Its file was removed: its open windows fire, it stops.
    Remove {
        /// The rule set.
        name: String,
        /// Where to answer.
        reply: Option<Reply>,
    },
    /// Stop calling it (its open windows fire first); its keyed state is kept.
    Disable {
        /// The rule set.
        name: String,
        /// Where to answer.
        reply: Option<Reply>,
    },
    /// Call it again.
    Enable {
        /// The rule set.
        name: String,
        /// Where to answer.
        reply: Option<Reply>,
    },
}

/// Sends changes to a running pipeline.
pub type Updates = std::sync::mpsc::Sender<Update>;
