//! The crate's one error type.

use std::fmt;
use std::io;

/// What went wrong, broadly. More kinds may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file or process operation failed; [`std::error::Error::source`] holds the `io::Error`.
    Io,
    /// The platform cannot provide this (e.g. `/proc` on a non-Linux Unix).
    Unsupported,
    /// A configuration value was rejected, or a path given refused (a symlink or a directory
    /// where a private file belongs); [`std::error::Error::source`] holds the `io::Error`
    /// when there is one.
    InvalidInput,
    /// A process-wide facility (signal listener, global subscriber) was already installed.
    AlreadyInstalled,
}

/// An error from this crate: a kind, what was being done, and the underlying cause.
///
/// `Display` says what was being done and why it failed; `Debug` reads the same, followed by
/// any deeper causes, so that a `main` returning `Result<_, Box<dyn std::error::Error>>`
/// prints something a person can act on:
///
/// ```text
/// Error: create directory /var/lib/gateway for flight record /var/lib/gateway/flight.jsonl: Permission denied (os error 13)
/// ```
///
/// `{:#?}` shows the fields instead.
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: Option<io::Error>,
}

impl Error {
    /// An I/O failure while doing `context` (e.g. `"open flight record /var/lib/x/flight.jsonl"`).
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        let kind = match source.kind() {
            io::ErrorKind::Unsupported => ErrorKind::Unsupported,
            // A path or value the caller gave was refused (a symlink at a private file's path).
            io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
            _ => ErrorKind::Io,
        };
        Self {
            kind,
            context: context.into(),
            source: Some(source),
        }
    }

    /// An error without an underlying I/O cause.
    #[allow(dead_code)] // used by modules gated on features/platforms
    pub(crate) fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// The broad kind of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f
                .debug_struct("Error")
                .field("kind", &self.kind)
                .field("context", &self.context)
                .field("source", &self.source)
                .finish();
        }
        // Display already ends with the direct cause; list only what lies beneath it.
        write!(f, "{self}")?;
        let mut cause = std::error::Error::source(self).and_then(std::error::Error::source);
        if cause.is_some() {
            f.write_str("\n\nCaused by:")?;
        }
        while let Some(e) = cause {
            write!(f, "\n    {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind {
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
            ErrorKind::AlreadyInstalled => io::ErrorKind::AlreadyExists,
            ErrorKind::Io => e
                .source
                .as_ref()
                .map_or(io::ErrorKind::Other, io::Error::kind),
        };
        io::Error::new(kind, e)
    }
}
