//! The downloader's error type. Variants carry what a front end needs to explain the failure;
//! transient network trouble is retried inside the downloader and only surfaces once retries
//! are exhausted; a hub that cannot be connected to at all fails at once
//! ([`DownloadError::Unreachable`]).
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "access to {repo} was refused (HTTP {status}); it may be gated or private: accept the \
         model's license on {page} and set HF_TOKEN (or store a token with `huggingface-cli login`)"
    )]
    Unauthorized {
        repo: String,
        status: u16,
        page: String,
    },
    #[error(
        "{repo} (revision {revision}) was not found on {endpoint} (a private repo needs HF_TOKEN)"
    )]
    RepoNotFound {
        repo: String,
        revision: String,
        endpoint: String,
    },
    #[error("the hub lists a file named {path:?}, which would escape the cache folder; refusing")]
    UnsafePath { path: String },
    #[error("no files of {repo} match {patterns:?}")]
    NoFiles { repo: String, patterns: Vec<String> },
    #[error("invalid include pattern {pattern:?}: {detail}")]
    BadPattern { pattern: String, detail: String },
    #[error("{url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: {detail}")]
    BadResponse { url: String, detail: String },
    /// Nothing answered at the hub's address (connection refused, a name that does not
    /// resolve, no network): not retried, because waiting would not change it.
    #[error(
        "the hub at {endpoint} is unreachable ({detail}); check the network connection (or \
         HF_ENDPOINT)"
    )]
    Unreachable { endpoint: String, detail: String },
    /// A `Link: rel="next"` page link that leaves the endpoint's origin (scheme, host, port).
    /// Page requests carry the user's token, so it is never followed.
    #[error(
        "the hub's next-page link {link} leaves {endpoint}; refusing to send the token to \
         another host"
    )]
    ForeignLink { link: String, endpoint: String },
    #[error("{url}: {source} (after {attempts} attempts)")]
    Network {
        url: String,
        attempts: u32,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The content does not match the hub's checksum: the LFS sha256, or for a small (non-LFS)
    /// file its git blob id (`algorithm` is "sha256" or "git blob sha1").
    #[error(
        "{path}: {algorithm} {actual} does not match the hub's {expected} (after {attempts} \
         downloads)"
    )]
    ChecksumMismatch {
        path: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
        attempts: u32,
    },
    #[error("{repo} is {total} bytes, over this server's download limit of {limit} bytes")]
    TooLarge {
        repo: String,
        total: u64,
        limit: u64,
    },
    #[error("not enough free space in {dir}: {needed} bytes needed, {available} available")]
    InsufficientSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("download cancelled")]
    Cancelled,
}

impl DownloadError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DownloadError {
        let path = path.into();
        move |source| DownloadError::Io { path, source }
    }
}

pub type Result<T> = std::result::Result<T, DownloadError>;
