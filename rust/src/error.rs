//! One error type for every core module: the file, where in it (byte offset or key), and why.
//!
//! The PyO3 glue maps [`ErrorKind`] onto the Python hierarchy in `vqfast.io.errors`
//! (`LoaderError` ← `ShardError(ValueError)` ← ...). Messages always start with the path.
use std::fmt;
use std::path::{Path, PathBuf};

/// Coarse class of a failure; decides the Python exception type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Truncated or inconsistent file: bad zip directory, pickle underflow, short data.
    Corrupt,
    /// Well-formed but outside what we read: deflated entry, big-endian, a global not allow-listed.
    Unsupported,
    /// The file reads fine but does not have the expected keys / dtypes / shapes.
    Schema,
    /// The operating system refused (open, read, mmap).
    Io,
    /// The file (or folder) does not exist (an `Io` error whose OS error is "not found").
    NotFound,
    /// A frame could not be decoded (JPEG/PNG).
    Decode,
    /// Bad argument from the caller (not tied to file contents).
    Argument,
    /// A bug: a panic caught in a Rust thread.
    Internal,
    /// The loader was closed while a call waited on it.
    Closed,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Schema => "schema",
            ErrorKind::Io => "io",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Decode => "decode",
            ErrorKind::Argument => "argument",
            ErrorKind::Internal => "internal",
            ErrorKind::Closed => "closed",
        }
    }
}

/// Where in the file the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    None,
    /// Byte offset in the file (or in the named zip entry when `entry` is set).
    Offset { entry: Option<String>, offset: u64 },
    /// A key path inside the loaded object, e.g. `latents` or `model.0.weight`.
    Key(String),
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub path: PathBuf,
    pub location: Location,
    pub reason: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, path: impl AsRef<Path>, location: Location, reason: impl Into<String>) -> Self {
        Error { kind, path: path.as_ref().to_path_buf(), location, reason: reason.into() }
    }
    pub fn corrupt_at(path: impl AsRef<Path>, offset: u64, reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, path, Location::Offset { entry: None, offset }, reason)
    }
    pub fn unsupported(path: impl AsRef<Path>, location: Location, reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, path, location, reason)
    }
    pub fn schema(path: impl AsRef<Path>, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Schema, path, Location::Key(key.into()), reason)
    }
    /// An OS error; "not found" becomes [`ErrorKind::NotFound`] (Python: `ShardNotFoundError`,
    /// also a `FileNotFoundError`).
    pub fn io(path: impl AsRef<Path>, err: &std::io::Error) -> Self {
        let kind = if err.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Io };
        Self::new(kind, path, Location::None, err.to_string())
    }
    pub fn argument(reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Argument, "", Location::None, reason)
    }
    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "", Location::None, reason)
    }
    /// Re-anchor an error that was produced while parsing a zip entry (offsets inside the entry).
    pub fn in_entry(mut self, entry: &str, entry_start: u64) -> Self {
        if let Location::Offset { entry: e @ None, offset } = &mut self.location {
            *e = Some(entry.to_string());
            let _ = entry_start;
            let _ = offset;
        }
        self
    }
    pub fn with_path(mut self, path: impl AsRef<Path>) -> Self {
        self.path = path.as_ref().to_path_buf();
        self
    }
    /// `offset` or `key` as a short string for the Python exception attributes.
    pub fn location_string(&self) -> Option<String> {
        match &self.location {
            Location::None => None,
            Location::Offset { entry: None, offset } => Some(format!("offset {offset}")),
            Location::Offset { entry: Some(e), offset } => Some(format!("entry '{e}' offset {offset}")),
            Location::Key(k) => Some(format!("key '{k}'")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display().to_string();
        if !p.is_empty() {
            write!(f, "{p}: ")?;
        }
        if let Some(loc) = self.location_string() {
            write!(f, "{loc}: ")?;
        }
        write!(f, "{}", self.reason)
    }
}

impl std::error::Error for Error {}

/// Text of a caught panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn message_names_file_location_and_reason() {
        let e = Error::corrupt_at("/x/a.pt", 12, "truncated");
        assert_eq!(e.to_string(), "/x/a.pt: offset 12: truncated");
        let e = Error::schema("/x/a.pt", "latents", "missing");
        assert_eq!(e.to_string(), "/x/a.pt: key 'latents': missing");
        let e = Error::corrupt_at("/x/a.pt", 3, "bad op").in_entry("a/data.pkl", 64);
        assert_eq!(e.to_string(), "/x/a.pt: entry 'a/data.pkl' offset 3: bad op");
    }

    #[test]
    fn missing_file_is_not_found_other_os_errors_are_io() {
        let nf = std::fs::read("/nonexistent/vqfast/x.pt").unwrap_err();
        let e = Error::io("/nonexistent/vqfast/x.pt", &nf);
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.kind.name(), "not_found");
        assert!(e.to_string().starts_with("/nonexistent/vqfast/x.pt: "));
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(Error::io("/x", &denied).kind, ErrorKind::Io);
    }
}
