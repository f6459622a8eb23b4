//! Search and model details against the local test hub (tests/hub/server.py) serving the
//! fixture repos of tests/hub/make_fixture_repos.py, with small pages so results span several.
use cortex_hub::download::HubConfig;
use cortex_hub::search::{
    details, search, DetailsOptions, Fit, Gated, ModelSummary, SearchError, SearchQuery, SortKey,
    WeightFormat,
};
use cortex_hub::HubModel;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const PAGE_SIZE: usize = 4;
const N_SMALL: usize = 30;

use cortex_testkit::{python, workspace_root as workspace};

struct Hub {
    /// Killed on drop, before `root` goes.
    _server: cortex_testkit::TestHub,
    url: String,
    root: tempfile::TempDir,
}

impl Hub {
    fn start() -> Hub {
        let root = tempfile::tempdir().unwrap();
        let repos = root.path().join("repos");
        let made = Command::new(python())
            .arg(workspace().join("tests/hub/make_fixture_repos.py"))
            .arg(&repos)
            .arg("--generated")
            .arg(workspace().join("tests/fixtures/generated"))
            .status()
            .expect("run make_fixture_repos.py");
        assert!(
            made.success(),
            "make_fixture_repos.py failed (run tests/fixtures/make_all.sh)"
        );
        let page_size = PAGE_SIZE.to_string();
        let server = cortex_testkit::TestHub::start(&repos, &["--page-size", &page_size]);
        let url = server.url.clone();
        Hub {
            _server: server,
            url,
            root,
        }
    }

    fn config(&self) -> HubConfig {
        HubConfig {
            endpoint: self.url.clone(),
            token: None,
            cache_dir: self.root.path().join("cache"),
        }
    }

    fn repo_dir(&self, id: &str) -> PathBuf {
        self.root.path().join("repos").join(id)
    }

    /// GETs of the search endpoint since the log was cleared.
    fn search_gets(&self) -> usize {
        let log: Vec<Value> = reqwest::blocking::get(format!("{}/_log", self.url))
            .unwrap()
            .json()
            .unwrap();
        log.iter().filter(|e| e["path"] == "/api/models").count()
    }

    fn clear_log(&self) {
        reqwest::blocking::Client::new()
            .delete(format!("{}/_log", self.url))
            .send()
            .unwrap();
    }
}

fn query(q: &str) -> SearchQuery {
    SearchQuery {
        query: q.into(),
        limit: 100,
        ..SearchQuery::default()
    }
}

fn ids(models: &[ModelSummary]) -> Vec<String> {
    models.iter().map(|m| m.id.clone()).collect()
}

/// small-model-i's downloads, likes, trending score (make_fixture_repos.py).
fn small_stats(i: usize) -> (u64, u64, f64) {
    (
        (i * 37 % 101) as u64,
        (i * 13 % 29) as u64,
        (i * 7 % 11) as f64,
    )
}

#[test]
fn search_follows_pages_until_the_limit() {
    let hub = Hub::start();
    hub.clear_log();
    let all = search(&hub.config(), &query("small-model")).unwrap();
    assert_eq!(all.len(), N_SMALL);
    assert_eq!(hub.search_gets(), N_SMALL.div_ceil(PAGE_SIZE));
    let mut unique = ids(&all);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), N_SMALL, "no repo twice across pages");

    hub.clear_log();
    let some = search(
        &hub.config(),
        &SearchQuery {
            limit: 9,
            ..query("small-model")
        },
    )
    .unwrap();
    assert_eq!(
        ids(&some),
        ids(&all)[..9].to_vec(),
        "same order, cut at the limit"
    );
    assert_eq!(hub.search_gets(), 3, "stops once the limit is reached");

    let zero = search(
        &hub.config(),
        &SearchQuery {
            limit: 0,
            ..query("x")
        },
    );
    assert!(matches!(zero, Err(SearchError::ZeroLimit)));
}

#[test]
fn search_sorts_descending_by_each_key() {
    let hub = Hub::start();
    let index = |id: &str| -> usize { id.rsplit('-').next().unwrap().parse().unwrap() };
    for sort in [
        SortKey::Downloads,
        SortKey::Likes,
        SortKey::Trending,
        SortKey::Updated,
    ] {
        let found = search(
            &hub.config(),
            &SearchQuery {
                sort,
                ..query("small-model")
            },
        )
        .unwrap();
        assert_eq!(found.len(), N_SMALL);
        for pair in found.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let ok = match sort {
                SortKey::Downloads => a.downloads >= b.downloads,
                SortKey::Likes => a.likes >= b.likes,
                SortKey::Trending => a.trending_score >= b.trending_score,
                SortKey::Updated => a.last_modified >= b.last_modified,
            };
            assert!(ok, "{sort:?}: {} before {}", a.id, b.id);
        }
        for m in &found {
            let (d, l, t) = small_stats(index(&m.id));
            assert_eq!(
                (m.downloads, m.likes, m.trending_score),
                (d, l, t),
                "{}",
                m.id
            );
            assert!(m.last_modified.is_some());
        }
    }
}

#[test]
fn search_filters_by_author_and_mlx() {
    let hub = Hub::start();
    let by_author = search(
        &hub.config(),
        &SearchQuery {
            author: Some("test-org".into()),
            ..query("")
        },
    )
    .unwrap();
    let found = ids(&by_author);
    assert!(found.contains(&"test-org/tiny-llama".to_string()));
    assert!(
        found.iter().all(|id| id.starts_with("test-org/")),
        "{found:?}"
    );
    assert!(
        !found.contains(&"test-org/private-model".to_string()),
        "private needs a token"
    );
    assert!(by_author
        .iter()
        .all(|m| m.author.as_deref() == Some("test-org")));

    let mlx = search(
        &hub.config(),
        &SearchQuery {
            mlx_only: true,
            ..query("")
        },
    )
    .unwrap();
    let mlx_ids = ids(&mlx);
    // Odd small models are mlx, plus tiny-llama-4bit.
    assert_eq!(mlx.len(), N_SMALL / 2 + 1, "{mlx_ids:?}");
    assert!(mlx_ids.contains(&"test-org/tiny-llama-4bit".to_string()));
    assert!(mlx.iter().all(|m| m.tags.iter().any(|t| t == "mlx")));
}

/// The element count of every tensor in a safetensors file, from its header.
fn safetensors_params(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| {
            v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product::<u64>()
        })
        .sum()
}

#[test]
fn details_of_tiny_llama() {
    let hub = Hub::start();
    let dir = hub.repo_dir("test-org/tiny-llama");
    let model = HubModel::new("test-org", "tiny-llama");
    let opts = DetailsOptions {
        context: 1000,
        card_bytes: 40,
        system_bytes: None,
    };
    let cfg = hub.config();
    let d = details(&cfg, &model, &opts).unwrap();

    // Every file but the server's own metadata, with its size on disk.
    let mut on_disk: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != ".hub.json")
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<(String, u64)> = d.files.iter().map(|f| (f.path.clone(), f.size)).collect();
    listed.sort();
    assert_eq!(listed, on_disk);
    assert_eq!(d.total_bytes, on_disk.iter().map(|(_, s)| s).sum::<u64>());
    assert!(d
        .files
        .iter()
        .filter(|f| f.path.ends_with(".safetensors"))
        .all(|f| f.lfs));

    assert_eq!(
        d.parameters,
        Some(safetensors_params(&dir.join("model.safetensors")))
    );
    assert_eq!(d.gated, Gated::No);
    assert_eq!(d.license.as_deref(), Some("apache-2.0"));
    assert_eq!(d.model_type.as_deref(), Some("llama"));
    assert!(d.supported, "{}", d.support_note);
    assert_eq!(d.weight_format, Some(WeightFormat::Safetensors));
    assert!(d
        .card
        .as_deref()
        .unwrap()
        .starts_with("---\nlicense: apache-2.0"));
    assert_eq!(d.card.as_ref().unwrap().len(), 40);
    assert!(d.card_truncated);

    // By hand from config.json: 2 (K, V) * 2 layers * 2 kv heads * head_dim 32 * 4 bytes (a
    // float32 checkpoint computes in float32 on every device); weights as downloaded.
    let weights = std::fs::metadata(dir.join("model.safetensors"))
        .unwrap()
        .len();
    let m = &d.memory;
    assert_eq!(m.weights_bytes, weights);
    assert_eq!(m.kv_bytes_per_token, Some(1024));
    assert_eq!(m.kv_bytes, 1_024_000);
    assert_eq!(m.total_bytes, weights + 1_024_000);

    // The verdict against a pinned machine size, not this machine's: 4x the need fits (<= 75%),
    // 1.1x is tight (<= 95%), less than the need is too big.
    for (system, fit) in [
        (4 * m.total_bytes, Fit::Fits),
        (m.total_bytes * 11 / 10, Fit::Tight),
        (m.total_bytes / 2, Fit::TooBig),
    ] {
        let opts = DetailsOptions {
            system_bytes: Some(system),
            ..opts.clone()
        };
        let d = details(&cfg, &model, &opts).unwrap();
        assert_eq!(d.memory.system_bytes, Some(system));
        assert_eq!(d.memory.fit, Some(fit), "system {system}");
    }
}

#[test]
fn details_of_gated_sharded_and_unsupported_repos() {
    let hub = Hub::start();
    let cfg = hub.config();
    let opts = DetailsOptions::default();

    // Metadata is public, files are not: no card, the model_type from the hub's config excerpt.
    let g = details(&cfg, &HubModel::new("test-org", "gated-model"), &opts).unwrap();
    assert_eq!(g.gated, Gated::Manual);
    assert_eq!(g.license.as_deref(), Some("llama3"));
    assert_eq!(g.card, None);
    assert_eq!(g.model_type.as_deref(), Some("llama"));
    assert!(g.supported);
    assert_eq!(
        g.memory.kv_bytes_per_token, None,
        "no full config.json without access"
    );

    let s = details(
        &cfg,
        &HubModel::new("test-org", "tiny-llama-sharded"),
        &opts,
    )
    .unwrap();
    let shards: u64 = s
        .files
        .iter()
        .filter(|f| f.path.ends_with(".safetensors"))
        .map(|f| f.size)
        .sum();
    assert!(
        s.files
            .iter()
            .filter(|f| f.path.ends_with(".safetensors"))
            .count()
            >= 2
    );
    assert_eq!(s.memory.weights_bytes, shards);

    let u = details(&cfg, &HubModel::new("test-org", "big-file"), &opts).unwrap();
    assert!(!u.supported);
    assert_eq!(u.weight_format, None);
    assert_eq!(u.license.as_deref(), Some("mit"));
}

#[test]
fn unknown_repo_is_a_typed_error() {
    let hub = Hub::start();
    let err = details(
        &hub.config(),
        &HubModel::new("test-org", "no-such-model"),
        &DetailsOptions::default(),
    )
    .unwrap_err();
    match err {
        SearchError::RepoNotFound { repo, endpoint } => {
            assert_eq!(repo, "test-org/no-such-model");
            assert_eq!(endpoint, hub.url);
        }
        other => panic!("expected RepoNotFound, got {other:?}"),
    }
}
