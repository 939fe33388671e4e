//! The plugin runtime's error type: one enum for everything a plugin, a deploy or the
//! registry can get wrong.

use crate::hook::HookKind;

/// A boxed source error (wasmtime's, an I/O error...), kept for `source()` chains.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a plugin call, a deploy or a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The call ran past its wall-clock deadline (epoch interruption) and was stopped.
    #[error("plugin ran past its {deadline_ms} ms deadline")]
    Timeout { deadline_ms: u64 },

    /// The guest tried to grow its memory past the cap.
    #[error("plugin tried to grow its memory past {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: usize },

    /// The guest trapped (panic, `unreachable`, out-of-bounds access, stack overflow...), or
    /// its answer could not be read (invalid canonical ABI value).
    #[error("plugin trapped: {detail}")]
    Trap {
        detail: String,
        #[source]
        source: BoxError,
    },

    /// The guest answered, but not a valid answer: wrong number of results, an empty or
    /// invalid subject, a region list that is not a list of names...
    #[error("plugin gave a wrong answer: {0}")]
    WrongAnswer(String),

    /// The guest answered with more than the limits allow (a 4 MiB subject, 1000 subjects...).
    #[error("plugin output too large: {0}")]
    OutputTooLarge(String),

    /// The bytes are not a usable component: not WebAssembly, a core module instead of a
    /// component, failed validation or compilation, or imports something tern does not give.
    #[error("invalid plugin component: {detail}")]
    InvalidComponent {
        detail: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The component is valid but does not implement the hook it was deployed for.
    #[error("component does not implement the `{hook}` hook: {detail}")]
    WrongWorld { hook: HookKind, detail: String },

    /// The batch given to the call is itself unusable (too long, payloads not matching).
    #[error("invalid call: {0}")]
    InvalidCall(String),

    /// A deploy or registry request is invalid (bad name, too many params...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// No plugin of that name is deployed.
    #[error("no plugin named `{0}`")]
    UnknownPlugin(String),

    /// The plugin's stored component could not be loaded on this node (for example, it was
    /// built for another version of the WIT package); its calls fail until a working
    /// version is deployed.
    #[error("plugin not loaded on this node: {0}; deploy a version built for it")]
    NotLoaded(String),

    /// Rollback asked for, but no earlier version is kept.
    #[error("plugin `{0}` has no earlier version to roll back to")]
    NoPreviousVersion(String),

    /// The precompiled artifact cache could not be written or read (the plugin still loads
    /// when only the cache write fails; see `PluginEngine::load`).
    #[error("artifact cache: {detail}")]
    Cache {
        detail: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The engine itself could not be set up.
    #[error("plugin engine: {detail}")]
    Engine {
        detail: String,
        #[source]
        source: BoxError,
    },
}

/// The kind of a call failure, for counters and fallbacks. Stable names for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    Timeout,
    MemoryLimit,
    Trap,
    WrongAnswer,
    OutputTooLarge,
    /// The stored component could not be loaded on this node.
    NotLoaded,
    /// Anything else (invalid call, engine trouble).
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 7] = [
        FailureKind::Timeout,
        FailureKind::MemoryLimit,
        FailureKind::Trap,
        FailureKind::WrongAnswer,
        FailureKind::OutputTooLarge,
        FailureKind::NotLoaded,
        FailureKind::Other,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::Trap => "trap",
            FailureKind::WrongAnswer => "wrong_answer",
            FailureKind::OutputTooLarge => "output_too_large",
            FailureKind::NotLoaded => "not_loaded",
            FailureKind::Other => "other",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl PluginError {
    /// The failure kind this error counts as.
    pub fn kind(&self) -> FailureKind {
        match self {
            PluginError::Timeout { .. } => FailureKind::Timeout,
            PluginError::MemoryLimit { .. } => FailureKind::MemoryLimit,
            PluginError::Trap { .. } => FailureKind::Trap,
            PluginError::WrongAnswer(_) => FailureKind::WrongAnswer,
            PluginError::OutputTooLarge(_) => FailureKind::OutputTooLarge,
            PluginError::NotLoaded(_) => FailureKind::NotLoaded,
            _ => FailureKind::Other,
        }
    }

    pub(crate) fn invalid(detail: impl Into<String>, source: impl Into<BoxError>) -> Self {
        PluginError::InvalidComponent {
            detail: detail.into(),
            source: Some(source.into()),
        }
    }
}
