//! Telling a Hugging Face model id apart from a local path, and parsing it.
//!
//! Accepted hub forms: `org/name`, `org/name@revision`, `https://huggingface.co/org/name`,
//! `https://huggingface.co/org/name/tree/revision`, and the same without the scheme or with the
//! `hf.co` host. Anything that looks like a path (`./x`, `/abs`, `~/x`, a name ending in `.gguf`,
//! or something that exists on disk) is local. A bare single name is local too (a name in the
//! models folder), because the hub's legacy one-part ids would be ambiguous with it.
//!
//! Repository names follow the hub's own rules: ASCII letters, digits, `-`, `_` and `.`, at most
//! 96 characters per part, not starting or ending with `-` or `.`, no `--` or `..` inside.
use std::path::{Path, PathBuf};

/// The hub's limit on the length of each part of a repository id.
pub const MAX_PART_LEN: usize = 96;

/// What a MODEL argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A model on the Hugging Face hub.
    Hub(HubModel),
    /// A file or folder on disk, or a name in the models folder.
    Local(PathBuf),
}

/// A hub repository and an optional revision (branch, tag or commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubModel {
    pub org: String,
    pub name: String,
    pub revision: Option<String>,
}

impl HubModel {
    pub fn new(org: &str, name: &str) -> Self {
        HubModel {
            org: org.to_string(),
            name: name.to_string(),
            revision: None,
        }
    }

    /// `org/name`, as the hub's API spells it.
    pub fn repo_id(&self) -> String {
        format!("{}/{}", self.org, self.name)
    }

    /// The revision to fetch: the one given, else `main`.
    pub fn revision_or_main(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    /// The repository's folder in the shared cache: `models--org--name`.
    pub fn cache_folder_name(&self) -> String {
        format!("models--{}--{}", self.org, self.name)
    }
}

impl std::fmt::Display for HubModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.revision {
            Some(r) => write!(f, "{}/{}@{}", self.org, self.name, r),
            None => write!(f, "{}/{}", self.org, self.name),
        }
    }
}

/// Which part of an id an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdPart {
    Org,
    Name,
}

impl std::fmt::Display for IdPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdPart::Org => "organization",
            IdPart::Name => "name",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelIdError {
    #[error("empty model id")]
    Empty,
    #[error("{input:?}: the {part} is empty (expected org/name)")]
    EmptyPart { input: String, part: IdPart },
    #[error("{input:?}: trailing slash (expected org/name)")]
    TrailingSlash { input: String },
    #[error("{input:?}: too many '/' (expected org/name, or a path starting with ./ or /)")]
    TooManyParts { input: String },
    #[error(
        "{input:?}: character {ch:?} is not allowed in the {part} (letters, digits, '-', '_', '.')"
    )]
    BadCharacter {
        input: String,
        part: IdPart,
        ch: char,
    },
    #[error("{input:?}: the {part} is {len} characters long; the hub allows at most {max}")]
    TooLong {
        input: String,
        part: IdPart,
        len: usize,
        max: usize,
    },
    #[error("{input:?}: '..' is not allowed in a model id")]
    DotDot { input: String },
    #[error("{input:?}: '--' is not allowed in a model id")]
    DoubleDash { input: String },
    #[error("{input:?}: the {part} may not start or end with '-' or '.'")]
    BadEdge { input: String, part: IdPart },
    #[error("{input:?}: {org:?} is a Hugging Face host name, not an organization")]
    HostAsOrganization { input: String, org: String },
    #[error("{input:?}: a model name ending in .gguf reads as a local file; name the repo, then pick the file")]
    GgufName { input: String },
    #[error("{input:?}: empty revision after '@'")]
    EmptyRevision { input: String },
    #[error("{input:?}: invalid revision {revision:?} ({reason})")]
    BadRevision {
        input: String,
        revision: String,
        reason: &'static str,
    },
    #[error("{input:?}: {host:?} is not a Hugging Face host (huggingface.co, hf.co)")]
    UnsupportedHost { input: String, host: String },
    #[error("{input:?}: unsupported Hugging Face URL (expected https://huggingface.co/org/name[/tree/revision])")]
    UnsupportedUrl { input: String },
}

/// True when `s` names a model on the hub rather than something local.
pub fn is_hugging_face_model_id(s: &str) -> bool {
    matches!(parse_model_ref(s), Ok(ModelRef::Hub(_)))
}

/// Parses a MODEL argument. Local-looking strings are `Local` without further checks; hub
/// ids and URLs are validated and errors say exactly what is wrong.
pub fn parse_model_ref(s: &str) -> Result<ModelRef, ModelIdError> {
    if s.is_empty() {
        return Err(ModelIdError::Empty);
    }
    if let Some(rest) = strip_url(s)? {
        return parse_url_path(s, rest).map(ModelRef::Hub);
    }
    if looks_local(s) {
        return Ok(ModelRef::Local(PathBuf::from(s)));
    }
    let (id, revision) = match s.split_once('@') {
        Some((id, rev)) => (id, Some(rev)),
        None => (s, None),
    };
    if !id.contains('/') && revision.is_none() {
        // One bare name: a model in the models folder.
        return Ok(ModelRef::Local(PathBuf::from(s)));
    }
    let mut model = parse_repo_id(s, id)?;
    if let Some(rev) = revision {
        model.revision = Some(check_revision(s, rev)?.to_string());
    }
    Ok(ModelRef::Hub(model))
}

fn looks_local(s: &str) -> bool {
    s.starts_with("./")
        || s.starts_with("../")
        || s.starts_with('/')
        || s.starts_with('~')
        || s == "."
        || s == ".."
        || s.contains('\\')
        || s.to_ascii_lowercase().ends_with(".gguf")
        || Path::new(s).exists()
}

/// For URL forms returns the path after the host; `None` when `s` is not a URL.
fn strip_url(s: &str) -> Result<Option<&str>, ModelIdError> {
    let (had_scheme, rest) = match s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if is_hub_host(host) {
        return Ok(Some(path));
    }
    if had_scheme {
        return Err(ModelIdError::UnsupportedHost {
            input: s.to_string(),
            host: host.to_string(),
        });
    }
    Ok(None)
}

/// The host names of Hugging Face model URLs (`hf.co/org/name` works without a scheme too).
fn is_hub_host(host: &str) -> bool {
    matches!(
        host.to_ascii_lowercase().as_str(),
        "huggingface.co" | "www.huggingface.co" | "hf.co"
    )
}

fn parse_url_path(input: &str, path: &str) -> Result<HubModel, ModelIdError> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    // Browsers add a trailing slash now and then; it carries no meaning in a URL.
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let unsupported = || ModelIdError::UnsupportedUrl {
        input: input.to_string(),
    };
    if segments.len() < 2 || segments[0].is_empty() {
        return Err(unsupported());
    }
    let mut model = parse_repo_id(input, &format!("{}/{}", segments[0], segments[1]))?;
    match segments.get(2) {
        None => {}
        Some(&"tree") if segments.len() > 3 => {
            let rev = segments[3..].join("/");
            model.revision = Some(check_revision(input, &rev)?.to_string());
        }
        Some(_) => return Err(unsupported()),
    }
    Ok(model)
}

fn parse_repo_id(input: &str, id: &str) -> Result<HubModel, ModelIdError> {
    if id.ends_with('/') {
        return Err(ModelIdError::TrailingSlash {
            input: input.to_string(),
        });
    }
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() > 2 {
        return Err(ModelIdError::TooManyParts {
            input: input.to_string(),
        });
    }
    let (org, name) = (parts[0], parts.get(1).copied().unwrap_or(""));
    check_part(input, org, IdPart::Org)?;
    check_part(input, name, IdPart::Name)?;
    // `hf.co/name` reads as a URL, so an organization named like a hub host could never be
    // written back as `org/name` (found by fuzz/fuzz_targets/model_id.rs).
    if is_hub_host(org) {
        return Err(ModelIdError::HostAsOrganization {
            input: input.to_string(),
            org: org.to_string(),
        });
    }
    // Likewise `org/name.gguf` reads as a local GGUF file.
    if name.to_ascii_lowercase().ends_with(".gguf") {
        return Err(ModelIdError::GgufName {
            input: input.to_string(),
        });
    }
    Ok(HubModel::new(org, name))
}

fn check_part(input: &str, part: &str, which: IdPart) -> Result<(), ModelIdError> {
    let input = || input.to_string();
    if part.is_empty() {
        return Err(ModelIdError::EmptyPart {
            input: input(),
            part: which,
        });
    }
    if part.contains("..") {
        return Err(ModelIdError::DotDot { input: input() });
    }
    if let Some(ch) = part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(ModelIdError::BadCharacter {
            input: input(),
            part: which,
            ch,
        });
    }
    if part.len() > MAX_PART_LEN {
        return Err(ModelIdError::TooLong {
            input: input(),
            part: which,
            len: part.len(),
            max: MAX_PART_LEN,
        });
    }
    if part.contains("--") {
        return Err(ModelIdError::DoubleDash { input: input() });
    }
    if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
        return Err(ModelIdError::BadEdge {
            input: input(),
            part: which,
        });
    }
    Ok(())
}

fn check_revision<'a>(input: &str, rev: &'a str) -> Result<&'a str, ModelIdError> {
    let bad = |reason| ModelIdError::BadRevision {
        input: input.to_string(),
        revision: rev.to_string(),
        reason,
    };
    if rev.is_empty() {
        return Err(ModelIdError::EmptyRevision {
            input: input.to_string(),
        });
    }
    if rev.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(bad("'..' or '.' segment"));
    }
    if rev.starts_with('/') || rev.ends_with('/') || rev.contains("//") {
        return Err(bad("empty path segment"));
    }
    if rev
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\\@~^:?*[".contains(c))
    {
        return Err(bad("character not allowed in a git ref"));
    }
    Ok(rev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(s: &str) -> HubModel {
        match parse_model_ref(s) {
            Ok(ModelRef::Hub(m)) => m,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn err(s: &str) -> ModelIdError {
        parse_model_ref(s).expect_err(s)
    }

    #[test]
    fn plain_id() {
        let m = hub("mlx-community/Qwen2.5-0.5B-Instruct-4bit");
        assert_eq!(m.org, "mlx-community");
        assert_eq!(m.name, "Qwen2.5-0.5B-Instruct-4bit");
        assert_eq!(m.revision, None);
        assert_eq!(m.revision_or_main(), "main");
        assert_eq!(
            m.cache_folder_name(),
            "models--mlx-community--Qwen2.5-0.5B-Instruct-4bit"
        );
        assert!(is_hugging_face_model_id(
            "HuggingFaceTB/SmolLM2-135M-Instruct"
        ));
    }

    #[test]
    fn id_with_revision() {
        let m = hub("org/name@v1.0");
        assert_eq!(m.revision.as_deref(), Some("v1.0"));
        assert_eq!(
            hub("org/name@refs/pr/1").revision.as_deref(),
            Some("refs/pr/1")
        );
        assert_eq!(m.to_string(), "org/name@v1.0");
    }

    #[test]
    fn an_organization_named_like_a_hub_host_is_refused() {
        // Found by fuzzing: it parsed, but its id `hf.co/amamo` reads back as a URL.
        for s in [
            "hf.co/hf.co/amamo",
            "https://huggingface.co/HF.CO/x",
            "https://hf.co/huggingface.co/x/tree/main",
        ] {
            assert!(
                matches!(err(s), ModelIdError::HostAsOrganization { .. }),
                "{s}"
            );
        }
        // Nor a repo named like a GGUF file (`org/x.gguf` is a local file).
        assert!(matches!(
            err("hf.co/g/mor.gguf"),
            ModelIdError::GgufName { .. }
        ));
        // Every id that parses writes back as itself.
        for s in [
            "org/name",
            "hf.co/org/name",
            "https://huggingface.co/a.b/c/tree/v1",
        ] {
            let m = hub(s);
            assert_eq!(hub(&m.to_string()), m, "{s}");
        }
    }

    #[test]
    fn urls() {
        for s in [
            "https://huggingface.co/org/name",
            "http://huggingface.co/org/name",
            "https://hf.co/org/name",
            "hf.co/org/name",
            "huggingface.co/org/name",
            "https://huggingface.co/org/name/",
            "https://huggingface.co/org/name?x=1",
        ] {
            assert_eq!(hub(s), HubModel::new("org", "name"), "{s}");
        }
        let m = hub("https://huggingface.co/org/name/tree/dev");
        assert_eq!(m.revision.as_deref(), Some("dev"));
        let m = hub("https://huggingface.co/org/name/tree/refs/pr/2");
        assert_eq!(m.revision.as_deref(), Some("refs/pr/2"));
    }

    #[test]
    fn local_paths() {
        for s in [
            "./x",
            "../x",
            "/abs/path",
            "~/models/x",
            "model.gguf",
            "dir/Model.Q4.GGUF",
            "default",
            "smollm",
            "C:\\models\\x",
            ".",
        ] {
            assert!(matches!(parse_model_ref(s), Ok(ModelRef::Local(_))), "{s}");
            assert!(!is_hugging_face_model_id(s), "{s}");
        }
        // Something that exists on disk wins over the id reading.
        let dir = std::env::temp_dir().join(format!("cortex-id-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("org/name")).unwrap();
        let rel = dir.join("org/name");
        assert!(matches!(
            parse_model_ref(rel.to_str().unwrap()),
            Ok(ModelRef::Local(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors() {
        assert_eq!(err(""), ModelIdError::Empty);
        assert!(matches!(
            err("@rev"),
            ModelIdError::EmptyPart {
                part: IdPart::Org,
                ..
            }
        ));
        assert!(matches!(err("org/"), ModelIdError::TrailingSlash { .. }));
        assert!(matches!(
            err("org/@main"),
            ModelIdError::TrailingSlash { .. }
        ));
        assert!(matches!(err("a/b/c"), ModelIdError::TooManyParts { .. }));
        assert!(matches!(
            err("org/na me"),
            ModelIdError::BadCharacter {
                ch: ' ',
                part: IdPart::Name,
                ..
            }
        ));
        assert!(matches!(
            err("or$g/name"),
            ModelIdError::BadCharacter {
                ch: '$',
                part: IdPart::Org,
                ..
            }
        ));
        let long = format!("org/{}", "a".repeat(97));
        assert!(matches!(
            err(&long),
            ModelIdError::TooLong {
                len: 97,
                max: 96,
                ..
            }
        ));
        assert!(is_hugging_face_model_id(&format!("org/{}", "a".repeat(96))));
        assert!(matches!(err("org/na..me"), ModelIdError::DotDot { .. }));
        assert!(matches!(err("org/na--me"), ModelIdError::DoubleDash { .. }));
        assert!(matches!(err("org/-name"), ModelIdError::BadEdge { .. }));
        assert!(matches!(
            err("org./name"),
            ModelIdError::BadEdge {
                part: IdPart::Org,
                ..
            }
        ));
        assert!(matches!(
            err("org/name@"),
            ModelIdError::EmptyRevision { .. }
        ));
        assert!(matches!(
            err("org/name@../x"),
            ModelIdError::BadRevision { .. }
        ));
        assert!(matches!(
            err("org/name@a b"),
            ModelIdError::BadRevision { .. }
        ));
        assert!(matches!(
            err("https://example.com/org/name"),
            ModelIdError::UnsupportedHost { .. }
        ));
        assert!(matches!(
            err("https://huggingface.co/org"),
            ModelIdError::UnsupportedUrl { .. }
        ));
        assert!(matches!(
            err("https://huggingface.co/org/name/blob/main/x"),
            ModelIdError::UnsupportedUrl { .. }
        ));
        assert!(matches!(
            err("https://huggingface.co/org/name/tree/"),
            ModelIdError::UnsupportedUrl { .. }
        ));
        assert!(matches!(
            err("hf.co/org/na..me"),
            ModelIdError::DotDot { .. }
        ));
    }

    #[test]
    fn error_messages_are_specific() {
        let e = err("org/na me").to_string();
        assert!(e.contains("' '") && e.contains("name"), "{e}");
    }
}
