//! The HTTP side of the hub API, shared by the downloader and search/details: one client
//! (HF_ENDPOINT, the token as Bearer, the stall timeout), the status -> error mapping, the retry
//! policy, Link-header pagination, and the endpoints both need (revision -> commit, the tree).
//! It never writes to the cache; that is the downloader's job.
use crate::download::{DownloadError, HubConfig};
use crate::model_id::HubModel;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::Duration;

type Result<T> = std::result::Result<T, DownloadError>;

#[derive(Debug, Clone, Deserialize)]
pub struct TreeEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub oid: String,
    #[serde(default)]
    pub lfs: Option<LfsInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LfsInfo {
    pub oid: String,
    pub size: u64,
}

impl TreeEntry {
    /// The blob name in the cache: the LFS sha256, else the git blob id (what the hub sends as
    /// the ETag, and what huggingface_hub names blobs after).
    pub fn etag(&self) -> &str {
        self.lfs
            .as_ref()
            .map(|l| l.oid.as_str())
            .unwrap_or(&self.oid)
    }

    pub fn file_size(&self) -> u64 {
        self.lfs.as_ref().map(|l| l.size).unwrap_or(self.size)
    }
}

#[derive(Deserialize)]
struct ModelInfo {
    sha: Option<String>,
}

pub(crate) struct HubClient {
    pub config: HubConfig,
    pub http: Client,
    pub max_retries: u32,
    pub backoff: Duration,
}

/// Transient failures are retried; the rest end the download.
pub(crate) enum Failure {
    Transient(Box<dyn std::error::Error + Send + Sync>),
    Fatal(DownloadError),
}

impl HubClient {
    pub fn new(
        config: HubConfig,
        stall_timeout: Duration,
        max_retries: u32,
        backoff: Duration,
    ) -> Result<Self> {
        let http = Client::builder()
            .user_agent(concat!("cortexstream/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(stall_timeout)
            // The blocking client applies this to each read, which makes it a stall detector.
            .timeout(stall_timeout)
            .build()
            .map_err(|e| DownloadError::BadResponse {
                url: config.endpoint.clone(),
                detail: e.to_string(),
            })?;
        Ok(HubClient {
            config,
            http,
            max_retries,
            backoff,
        })
    }

    pub fn get(&self, url: &str) -> RequestBuilder {
        let req = self.http.get(url);
        match &self.config.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub fn resolve_url(&self, repo: &HubModel, commit: &str, path: &str) -> String {
        let path: Vec<String> = path.split('/').map(encode_segment).collect();
        format!(
            "{}/{}/resolve/{}/{}",
            self.config.endpoint,
            repo.repo_id(),
            encode_segment(commit),
            path.join("/")
        )
    }

    /// Maps a response status to the error it means, or `None` on success. Without a `repo`
    /// (search), 401/403/404 are plain HTTP errors.
    pub fn classify(
        &self,
        repo: Option<&HubModel>,
        url: &str,
        status: StatusCode,
    ) -> Option<Failure> {
        if status.is_success() {
            return None;
        }
        let code = status.as_u16();
        Some(match (code, repo) {
            (401 | 403, Some(repo)) => Failure::Fatal(DownloadError::Unauthorized {
                repo: repo.repo_id(),
                status: code,
                page: format!("{}/{}", self.config.endpoint, repo.repo_id()),
            }),
            (404, Some(repo)) => Failure::Fatal(DownloadError::RepoNotFound {
                repo: repo.repo_id(),
                revision: repo.revision_or_main().to_string(),
                endpoint: self.config.endpoint.clone(),
            }),
            (408 | 429 | 500..=599, _) => Failure::Transient(format!("HTTP {code}").into()),
            _ => Failure::Fatal(DownloadError::Http {
                url: url.to_string(),
                status: code,
            }),
        })
    }

    /// [`Self::classify`], except that the hub's `X-Error-Code: RepoNotFound` means not found
    /// even on a 401 (what the hub answers for unknown and private repos alike without a token).
    pub fn classify_response(
        &self,
        repo: Option<&HubModel>,
        url: &str,
        resp: &Response,
    ) -> Option<Failure> {
        let code = resp
            .headers()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok());
        match (repo, code) {
            (Some(repo), Some("RepoNotFound")) if !resp.status().is_success() => {
                Some(Failure::Fatal(DownloadError::RepoNotFound {
                    repo: repo.repo_id(),
                    revision: repo.revision_or_main().to_string(),
                    endpoint: self.config.endpoint.clone(),
                }))
            }
            _ => self.classify(repo, url, resp.status()),
        }
    }

    /// What a request that got no response means. Failing to connect at all (connection
    /// refused, a name that does not resolve: what a machine without network sees) is fatal:
    /// retrying with backoff would only keep the caller waiting for half a minute. A connect
    /// timeout, and anything that breaks after the connection stood, stay transient.
    pub fn send_failure(&self, e: reqwest::Error) -> Failure {
        if e.is_connect() && !e.is_timeout() {
            return Failure::Fatal(DownloadError::Unreachable {
                endpoint: self.config.endpoint.clone(),
                detail: root_cause(&e),
            });
        }
        Failure::Transient(Box::new(e))
    }

    /// Sleeps before retry `attempt` (1-based): base * 2^(attempt-1), capped at 30 s.
    pub fn backoff_sleep(
        &self,
        attempt: u32,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<()> {
        let wait = self
            .backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(Duration::from_secs(30));
        let until = std::time::Instant::now() + wait;
        while std::time::Instant::now() < until {
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(DownloadError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(20).min(wait));
        }
        Ok(())
    }

    /// One API GET with retries on transient failures.
    pub fn get_json(
        &self,
        repo: Option<&HubModel>,
        url: &str,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let failure = match self.get(url).send() {
                Ok(resp) => match self.classify_response(repo, url, &resp) {
                    None => return Ok(resp),
                    Some(f) => f,
                },
                Err(e) => self.send_failure(e),
            };
            match failure {
                Failure::Fatal(e) => return Err(e),
                Failure::Transient(source) => {
                    attempt += 1;
                    if attempt > self.max_retries {
                        return Err(DownloadError::Network {
                            url: url.to_string(),
                            attempts: attempt,
                            source,
                        });
                    }
                    self.backoff_sleep(attempt, cancel)?;
                }
            }
        }
    }

    /// The commit `repo`'s revision points at.
    pub fn resolve_commit(
        &self,
        repo: &HubModel,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<String> {
        let rev = repo.revision_or_main();
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.config.endpoint,
            repo.repo_id(),
            encode_segment(rev)
        );
        let info: ModelInfo = self
            .get_json(Some(repo), &url, cancel)?
            .json()
            .map_err(bad(&url))?;
        match info.sha {
            Some(sha) => Ok(sha),
            None if rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()) => {
                Ok(rev.to_string())
            }
            None => Err(DownloadError::BadResponse {
                url,
                detail: "model info has no sha".into(),
            }),
        }
    }

    /// Every file of the repository at `commit`.
    pub fn list_files(
        &self,
        repo: &HubModel,
        commit: &str,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<Vec<TreeEntry>> {
        let url = format!(
            "{}/api/models/{}/tree/{}?recursive=true",
            self.config.endpoint,
            repo.repo_id(),
            encode_segment(commit)
        );
        let mut files = Vec::new();
        self.get_pages(Some(repo), url, cancel, |page: Vec<TreeEntry>| {
            files.extend(page.into_iter().filter(|e| e.kind == "file"));
            true
        })?;
        Ok(files)
    }

    /// GETs `url` and every page its `Link: rel="next"` header chains to, handing each page to
    /// `on_page` until it returns false or there is no next page.
    pub fn get_pages<T: DeserializeOwned>(
        &self,
        repo: Option<&HubModel>,
        mut url: String,
        cancel: &std::sync::atomic::AtomicBool,
        mut on_page: impl FnMut(Vec<T>) -> bool,
    ) -> Result<()> {
        loop {
            let resp = self.get_json(repo, &url, cancel)?;
            let next = resp
                .headers()
                .get_all(reqwest::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link);
            let page: Vec<T> = resp.json().map_err(bad(&url))?;
            if !on_page(page) {
                return Ok(());
            }
            match next {
                Some(n) => url = self.next_page_url(&url, &n)?,
                None => return Ok(()),
            }
        }
    }

    /// Where a `rel="next"` link points: a path is taken on the endpoint, anything else is
    /// resolved against the current page's URL. Every page request carries the token, so a
    /// link whose origin (scheme, host, port) is not the endpoint's is refused.
    fn next_page_url(&self, current: &str, link: &str) -> Result<String> {
        let endpoint = &self.config.endpoint;
        let resolved = if link.starts_with('/') && !link.starts_with("//") {
            reqwest::Url::parse(&format!("{endpoint}{link}")).ok()
        } else {
            reqwest::Url::parse(current)
                .ok()
                .and_then(|base| base.join(link).ok())
        };
        let foreign = || DownloadError::ForeignLink {
            link: link.to_string(),
            endpoint: endpoint.clone(),
        };
        let resolved = resolved.ok_or_else(foreign)?;
        match reqwest::Url::parse(endpoint) {
            Ok(base) if same_origin(&base, &resolved) => Ok(resolved.into()),
            _ => Err(foreign()),
        }
    }
}

/// Whether two URLs share scheme, host and port (a default port counts as given).
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    let (oa, ob) = (a.origin(), b.origin());
    oa.is_tuple() && oa == ob
}

pub(crate) fn bad(url: &str) -> impl FnOnce(reqwest::Error) -> DownloadError + '_ {
    move |e| DownloadError::BadResponse {
        url: url.to_string(),
        detail: e.to_string(),
    }
}

/// The innermost cause of `e` ("Connection refused (os error 111)", "failed to lookup address
/// information: ..."), which says more than reqwest's "error sending request for url".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The URL of `rel="next"` in a Link header value, if any.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// Percent-encodes one URL path segment (RFC 3986 unreserved characters stay as they are).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header() {
        let h = r#"<https://hub/api/models?cursor=abc>; rel="next", <https://hub/x>; rel="prev""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://hub/api/models?cursor=abc")
        );
        assert_eq!(next_link(r#"<https://hub/x>; rel="prev""#), None);
    }

    #[test]
    fn next_page_stays_on_the_endpoint_origin() {
        let client = |endpoint: &str| {
            HubClient::new(
                HubConfig {
                    endpoint: endpoint.into(),
                    token: Some("t".into()),
                    cache_dir: std::env::temp_dir(),
                },
                Duration::from_secs(1),
                0,
                Duration::from_millis(1),
            )
            .unwrap()
        };
        let c = client("https://hub.example");
        let cur = "https://hub.example/api/models?limit=2";
        let ok = |l: &str| c.next_page_url(cur, l).unwrap();
        let refused = |l: &str| {
            matches!(
                c.next_page_url(cur, l),
                Err(DownloadError::ForeignLink { .. })
            )
        };
        assert_eq!(
            ok("/api/models?cursor=x"),
            "https://hub.example/api/models?cursor=x"
        );
        assert_eq!(
            ok("https://hub.example:443/api/models?cursor=x"),
            "https://hub.example/api/models?cursor=x"
        );
        assert_eq!(
            ok("models?cursor=x"),
            "https://hub.example/api/models?cursor=x"
        );
        assert!(refused("https://evil.example/api/models?cursor=x"));
        assert!(refused("http://hub.example/api/models?cursor=x"));
        assert!(refused("https://hub.example:8443/api/models?cursor=x"));
        assert!(refused("https://hub.example.evil.example/x"));
        assert!(refused("//evil.example/api/models"));
        assert!(refused("file:///etc/passwd"));
        // An endpoint with a path prefix (a mirror) keeps it for path links.
        let m = client("http://127.0.0.1:8080/hf");
        assert_eq!(
            m.next_page_url(
                "http://127.0.0.1:8080/hf/api/models",
                "/api/models?cursor=y"
            )
            .unwrap(),
            "http://127.0.0.1:8080/hf/api/models?cursor=y"
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_segment("a b.json"), "a%20b.json");
    }
}
