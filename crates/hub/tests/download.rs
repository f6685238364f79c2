//! End-to-end tests of `Hub` against a local server that emulates the Hub.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use bitnet_hub::{Error, Hub, OfflineReason};
use common::{COMMIT, GOOD_TOKEN, MockFile, MockHub, MockRepo, bytes, repo_dir, standard_repo};

fn hub(server: &MockHub, cache: &Path) -> Hub {
    Hub::new(server.url.clone(), cache.to_path_buf()).with_progress(false)
}

fn incomplete_path(cache: &Path, repo_id: &str, etag: &str) -> PathBuf {
    repo_dir(cache, repo_id)
        .join("blobs")
        .join(format!("{etag}.incomplete"))
}

fn ranges(server: &MockHub) -> Vec<Option<String>> {
    server.file_gets().into_iter().map(|r| r.range).collect()
}

#[test]
fn files_land_in_the_hf_cache_layout() {
    let repo = standard_repo();
    let server = MockHub::start(vec![repo.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let hub = hub(&server, tmp.path());
    let dir = repo_dir(tmp.path(), "org/model");

    for (name, link) in [
        ("model.gguf", "../../blobs/"),
        ("config.json", "../../blobs/"),
        ("tokenizer/tokenizer.json", "../../../blobs/"),
        ("sub/dir/weights.bin", "../../../../blobs/"),
    ] {
        let file = repo.file(name);
        let path = hub.download_file("org/model", "main", name).unwrap();
        let etag = file.etag();
        assert_eq!(path, dir.join("snapshots").join(COMMIT).join(name));
        assert!(
            fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read_link(&path).unwrap(),
            PathBuf::from(format!("{link}{etag}"))
        );
        assert_eq!(fs::read(&path).unwrap(), file.content, "{name}");
        assert_eq!(
            fs::read(dir.join("blobs").join(&etag)).unwrap(),
            file.content
        );
        assert!(!incomplete_path(tmp.path(), "org/model", &etag).exists());
    }
    assert_eq!(fs::read_to_string(dir.join("refs/main")).unwrap(), COMMIT);
    // Regular files: weak quoted ETag stripped. LFS: X-Linked-Etag, not ETag.
    let mut blobs: Vec<String> = fs::read_dir(dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    blobs.sort();
    let mut want: Vec<String> = repo.files.iter().map(|f| f.etag()).collect();
    want.sort();
    assert_eq!(blobs, want);

    // The LFS file was fetched from the "CDN" after a 302.
    let gets = server.file_gets();
    assert!(gets.iter().any(|r| {
        r.path
            .starts_with(&format!("/blobs/{}", repo.file("model.gguf").etag()))
    }));
    // HEAD first, on the resolve URL, for every file.
    let heads = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "HEAD")
        .count();
    assert_eq!(heads, 4);

    assert_eq!(
        hub.cached_file("org/model", "main", "sub/dir/weights.bin"),
        Some(
            dir.join("snapshots")
                .join(COMMIT)
                .join("sub/dir/weights.bin")
        )
    );
    assert_eq!(
        hub.cached_snapshot("org/model", "main"),
        Some(dir.join("snapshots").join(COMMIT))
    );
    assert_eq!(hub.cached_file("org/model", "main", "missing.bin"), None);
    assert_eq!(hub.cached_file("org/model", "v2", "model.gguf"), None);
}

#[test]
fn second_download_makes_no_get() {
    let server = MockHub::start(vec![standard_repo()]);
    let tmp = tempfile::tempdir().unwrap();
    let hub = hub(&server, tmp.path());
    let first = hub
        .download_file("org/model", "main", "model.gguf")
        .unwrap();
    let gets = server.file_gets().len();
    assert!(gets >= 1);

    let second = hub
        .download_file("org/model", "main", "model.gguf")
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(server.file_gets().len(), gets, "no GET for a cached file");

    // Pinned to a commit hash and cached: no request at all.
    server.clear_log();
    let pinned = hub
        .download_file("org/model", COMMIT, "model.gguf")
        .unwrap();
    assert_eq!(pinned, first);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn partial_download_is_resumed_with_range() {
    let repo = standard_repo();
    let server = MockHub::start(vec![repo.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let file = repo.file("model.gguf");
    let part = incomplete_path(tmp.path(), "org/model", &file.etag());
    fs::create_dir_all(part.parent().unwrap()).unwrap();
    fs::write(&part, &file.content[..123_457]).unwrap();

    let path = hub(&server, tmp.path())
        .download_file("org/model", "main", "model.gguf")
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), file.content);
    assert!(!part.exists());
    assert_eq!(ranges(&server), vec![Some("bytes=123457-".to_string())]);

    // Same for a regular (non-LFS, no redirect) file.
    let cfg = repo.file("config.json");
    let part = incomplete_path(tmp.path(), "org/model", &cfg.etag());
    fs::write(&part, &cfg.content[..5]).unwrap();
    server.clear_log();
    let path = hub(&server, tmp.path())
        .download_file("org/model", "main", "config.json")
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), cfg.content);
    assert_eq!(ranges(&server), vec![Some("bytes=5-".to_string())]);
}

#[test]
fn server_ignoring_range_still_gives_exact_file() {
    let repo = standard_repo();
    let server = MockHub::start(vec![repo.clone()]);
    server.set_behaviour(|b| b.ignore_range = true);
    let tmp = tempfile::tempdir().unwrap();
    let file = repo.file("model.gguf");
    let part = incomplete_path(tmp.path(), "org/model", &file.etag());
    fs::create_dir_all(part.parent().unwrap()).unwrap();
    fs::write(&part, &file.content[..300_000]).unwrap();

    let path = hub(&server, tmp.path())
        .download_file("org/model", "main", "model.gguf")
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), file.content);
    assert_eq!(ranges(&server), vec![Some("bytes=300000-".to_string())]);
}

#[test]
fn stale_incomplete_longer_than_the_file_is_discarded() {
    let repo = standard_repo();
    let server = MockHub::start(vec![repo.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let file = repo.file("sub/dir/weights.bin");
    let part = incomplete_path(tmp.path(), "org/model", &file.etag());
    fs::create_dir_all(part.parent().unwrap()).unwrap();
    fs::write(&part, vec![7u8; file.content.len() + 10]).unwrap();
    let path = hub(&server, tmp.path())
        .download_file("org/model", "main", "sub/dir/weights.bin")
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), file.content);
    assert_eq!(ranges(&server), vec![None]);
}

#[test]
fn server_dying_mid_download_leaves_incomplete_that_a_later_call_resumes() {
    let repo = standard_repo();
    let server = MockHub::start(vec![repo.clone()]);
    server.set_behaviour(|b| b.die_after = Some(200_000));
    let tmp = tempfile::tempdir().unwrap();
    let file = repo.file("model.gguf");

    let err = hub(&server, tmp.path())
        .download_file("org/model", "main", "model.gguf")
        .unwrap_err();
    assert!(server.is_dead());
    assert!(matches!(err, Error::Network { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("org/model/model.gguf"), "{msg}");
    assert!(msg.contains(&server.url), "{msg}");
    assert!(msg.contains("200000 of 700000 bytes kept"), "{msg}");
    let part = incomplete_path(tmp.path(), "org/model", &file.etag());
    assert_eq!(fs::read(&part).unwrap(), &file.content[..200_000]);
    drop(server);

    // A new server (another port, the same repo), the same cache.
    let server = MockHub::start(vec![repo.clone()]);
    let path = hub(&server, tmp.path())
        .download_file("org/model", "main", "model.gguf")
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), file.content);
    assert_eq!(ranges(&server), vec![Some("bytes=200000-".to_string())]);
    assert!(!part.exists());
}

#[test]
fn broken_connection_is_resumed_within_one_call() {
    let repo = standard_repo();
    let server = MockHub::start(vec![repo.clone()]);
    server.set_behaviour(|b| {
        b.cut_gets = 2;
        b.cut_after = 100_000;
    });
    let tmp = tempfile::tempdir().unwrap();
    let path = hub(&server, tmp.path())
        .download_file("org/model", "main", "model.gguf")
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), repo.file("model.gguf").content);
    assert_eq!(
        ranges(&server),
        vec![
            None,
            Some("bytes=100000-".to_string()),
            Some("bytes=200000-".to_string())
        ]
    );

    // With retries disabled the error surfaces and the partial file stays.
    server.set_behaviour(|b| {
        b.cut_gets = 1;
        b.cut_after = 1000;
    });
    let err = hub(&server, tmp.path())
        .with_max_retries(0)
        .download_file("org/model", "main", "sub/dir/weights.bin")
        .unwrap_err();
    assert!(matches!(err, Error::Network { .. }), "{err:?}");
    let etag = repo.file("sub/dir/weights.bin").etag();
    let part = incomplete_path(tmp.path(), "org/model", &etag);
    assert_eq!(fs::metadata(part).unwrap().len(), 1000);
}

#[test]
fn offline_mode_resolves_from_cache_only() {
    let server = MockHub::start(vec![standard_repo()]);
    let tmp = tempfile::tempdir().unwrap();
    let online = hub(&server, tmp.path());
    let path = online
        .download_file("org/model", "main", "config.json")
        .unwrap();
    server.clear_log();

    let offline = hub(&server, tmp.path()).with_offline(true);
    assert!(offline.is_offline());
    assert_eq!(
        offline
            .download_file("org/model", "main", "config.json")
            .unwrap(),
        path
    );
    assert_eq!(
        offline
            .download_repo("org/model", "main", &|_| true)
            .unwrap(),
        path.parent().unwrap()
    );
    let listing = offline.list_files("org/model", "main").unwrap();
    assert_eq!(listing.commit, COMMIT);
    assert_eq!(
        listing
            .files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["config.json"]
    );

    let err = offline
        .download_file("org/model", "main", "model.gguf")
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotCached { filename: Some(f), .. } if f == "model.gguf"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("HF_HUB_OFFLINE"), "{msg}");
    assert!(msg.contains("org/model/model.gguf"), "{msg}");
    let err = offline
        .download_repo("other/repo", "main", &|_| true)
        .unwrap_err();
    assert!(matches!(err, Error::NotCached { .. }), "{err:?}");
    assert!(offline.list_files("other/repo", "main").is_err());

    assert!(
        server.requests().is_empty(),
        "offline mode made requests: {:?}",
        server.requests()
    );
}

#[test]
fn unreachable_hub_falls_back_to_cache() {
    let server = MockHub::start(vec![standard_repo()]);
    let tmp = tempfile::tempdir().unwrap();
    let path = hub(&server, tmp.path())
        .download_file("org/model", "main", "config.json")
        .unwrap();
    server.kill();

    let hub = hub(&server, tmp.path());
    assert_eq!(
        hub.download_file("org/model", "main", "config.json")
            .unwrap(),
        path
    );
    assert_eq!(
        hub.download_repo("org/model", "main", &|_| true).unwrap(),
        path.parent().unwrap()
    );
    let err = hub
        .download_file("org/model", "main", "model.gguf")
        .unwrap_err();
    match &err {
        Error::NotCached {
            reason: OfflineReason::Unreachable(cause),
            ..
        } => {
            assert!(matches!(**cause, Error::Network { .. }), "{cause:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("could not be reached"), "{err}");
}

#[test]
fn not_found_errors_name_repo_file_and_url() {
    let server = MockHub::start(vec![standard_repo()]);
    let tmp = tempfile::tempdir().unwrap();
    let hub = hub(&server, tmp.path());

    let err = hub
        .download_file("org/nope", "main", "model.gguf")
        .unwrap_err();
    assert!(
        matches!(&err, Error::RepoNotFound { repo_id, url } if repo_id == "org/nope" && url.starts_with(&server.url)),
        "{err:?}"
    );
    assert!(err.is_not_found());
    assert!(err.to_string().contains("org/nope"));

    let err = hub
        .download_file("org/model", "main", "nope.bin")
        .unwrap_err();
    assert!(
        matches!(&err, Error::EntryNotFound { repo_id, filename, url, .. }
            if repo_id == "org/model" && filename == "nope.bin" && url.ends_with("/org/model/resolve/main/nope.bin")),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("nope.bin") && msg.contains("org/model"),
        "{msg}"
    );

    let err = hub
        .download_file("org/model", "v9", "config.json")
        .unwrap_err();
    assert!(
        matches!(&err, Error::RevisionNotFound { revision, .. } if revision == "v9"),
        "{err:?}"
    );

    let err = hub.list_files("org/nope", "main").unwrap_err();
    assert!(matches!(err, Error::RepoNotFound { .. }), "{err:?}");
    let err = hub
        .download_repo("org/nope", "main", &|_| true)
        .unwrap_err();
    assert!(matches!(err, Error::RepoNotFound { .. }), "{err:?}");

    // Nothing was cached for the failures.
    assert!(!repo_dir(tmp.path(), "org/nope").exists());

    // Bad input is rejected before any request.
    server.clear_log();
    for (repo, file) in [
        ("../etc", "x"),
        ("org/model", "../../../etc/passwd"),
        ("org/model", "/abs"),
    ] {
        let err = hub.download_file(repo, "main", file).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidRepoId { .. } | Error::InvalidFilename { .. }
            ),
            "{err:?}"
        );
    }
    let err = hub
        .download_file("org/model", "../x", "config.json")
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRevision { .. }), "{err:?}");
    assert!(server.requests().is_empty());
}

#[test]
fn gated_repo_needs_a_token_which_is_not_sent_to_the_cdn() {
    let mut repo = standard_repo();
    repo.id = "org/gated".into();
    repo.gated = true;
    let server = MockHub::start(vec![repo.clone()]);
    let tmp = tempfile::tempdir().unwrap();

    let err = hub(&server, tmp.path())
        .download_file("org/gated", "main", "model.gguf")
        .unwrap_err();
    match &err {
        Error::GatedRepo {
            repo_id,
            filename,
            status,
            url,
            ..
        } => {
            assert_eq!(repo_id, "org/gated");
            assert_eq!(filename.as_deref(), Some("model.gguf"));
            assert_eq!(*status, 401);
            assert!(url.contains("/org/gated/resolve/main/model.gguf"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("HF_TOKEN"));
    let err = hub(&server, tmp.path())
        .list_files("org/gated", "main")
        .unwrap_err();
    assert!(matches!(err, Error::GatedRepo { .. }), "{err:?}");

    let wrong = hub(&server, tmp.path()).with_token(Some("hf_wrong".into()));
    assert!(matches!(
        wrong.download_file("org/gated", "main", "config.json"),
        Err(Error::GatedRepo { .. })
    ));

    server.clear_log();
    let authed = hub(&server, tmp.path()).with_token(Some(GOOD_TOKEN.into()));
    let path = authed
        .download_file("org/gated", "main", "model.gguf")
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), repo.file("model.gguf").content);
    let bearer = format!("Bearer {GOOD_TOKEN}");
    for r in server.requests() {
        // The CDN is another "host" in real life; here it has the same
        // origin, so only check that the Hub itself got the token.
        if r.path.contains("/resolve/") {
            assert_eq!(r.auth.as_deref(), Some(bearer.as_str()), "{r:?}");
        }
    }
}

#[test]
fn token_is_not_sent_to_another_host() {
    // The "CDN" is reached through a different origin (localhost vs 127.0.0.1).
    let repo = standard_repo();
    let server = MockHub::start(vec![repo.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let other_origin = server.url.replace("127.0.0.1", "localhost");
    let hub = Hub::new(other_origin, tmp.path().to_path_buf())
        .with_progress(false)
        .with_token(Some("hf_secret".into()));
    hub.download_file("org/model", "main", "model.gguf")
        .unwrap();
    let reqs = server.requests();
    let resolve: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.contains("/resolve/"))
        .collect();
    let cdn: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/blobs/"))
        .collect();
    assert!(!resolve.is_empty() && !cdn.is_empty());
    assert!(
        resolve
            .iter()
            .all(|r| r.auth.as_deref() == Some("Bearer hf_secret"))
    );
    assert!(cdn.iter().all(|r| r.auth.is_none()), "{cdn:?}");
}

#[test]
fn download_repo_with_filter_and_list_files() {
    let repo = standard_repo();
    let server = MockHub::start(vec![repo.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let hub = hub(&server, tmp.path());

    let info = hub.list_files("org/model", "main").unwrap();
    assert_eq!(info.commit, COMMIT);
    let names: Vec<_> = info.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "model.gguf",
            "config.json",
            "tokenizer/tokenizer.json",
            "sub/dir/weights.bin"
        ]
    );
    assert_eq!(info.files[0].size, Some(700_000));

    let dir = hub
        .download_repo("org/model", "main", &|f| f.ends_with(".json"))
        .unwrap();
    let rdir = repo_dir(tmp.path(), "org/model");
    assert_eq!(dir, rdir.join("snapshots").join(COMMIT));
    assert_eq!(
        fs::read(dir.join("config.json")).unwrap(),
        repo.file("config.json").content
    );
    assert_eq!(
        fs::read(dir.join("tokenizer/tokenizer.json")).unwrap(),
        repo.file("tokenizer/tokenizer.json").content
    );
    assert!(!dir.join("model.gguf").exists());
    assert!(!dir.join("sub").exists());
    assert_eq!(fs::read_to_string(rdir.join("refs/main")).unwrap(), COMMIT);
    // Files were asked for at the commit, so a moving branch cannot mix versions.
    assert!(
        server
            .requests()
            .iter()
            .filter(|r| r.path.contains("/resolve/"))
            .all(|r| r.path.contains(&format!("/resolve/{COMMIT}/")))
    );

    // Again, everything cached: only the listing request.
    server.clear_log();
    hub.download_repo("org/model", "main", &|f| f.ends_with(".json"))
        .unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(
        reqs[0]
            .path
            .starts_with("/api/models/org/model/revision/main")
    );

    // An accept-nothing filter still gives the (existing) snapshot dir.
    assert_eq!(
        hub.download_repo("org/model", COMMIT, &|_| false).unwrap(),
        dir
    );
}

#[test]
fn checksum_mismatch_is_detected() {
    let mut repo = standard_repo();
    repo.files[0].corrupt = true;
    let server = MockHub::start(vec![repo.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let err = hub(&server, tmp.path())
        .download_file("org/model", "main", "model.gguf")
        .unwrap_err();
    let etag = repo.file("model.gguf").etag();
    assert!(
        matches!(&err, Error::ChecksumMismatch { expected, filename, .. } if *expected == etag && filename == "model.gguf"),
        "{err:?}"
    );
    let blobs = repo_dir(tmp.path(), "org/model").join("blobs");
    assert!(!blobs.join(&etag).exists());
    assert!(!incomplete_path(tmp.path(), "org/model", &etag).exists());
    assert!(!repo_dir(tmp.path(), "org/model").join("snapshots").exists());
}

#[test]
fn size_mismatch_is_detected() {
    let mut repo = standard_repo();
    repo.files[0].advertised_size = Some(700_010);
    repo.files[1].advertised_size = Some(3);
    let server = MockHub::start(vec![repo.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let hub = hub(&server, tmp.path());
    let err = hub
        .download_file("org/model", "main", "model.gguf")
        .unwrap_err();
    assert!(
        matches!(&err, Error::SizeMismatch { expected: 700_010, actual: 700_000, repo_id, url, .. }
            if repo_id == "org/model" && url.contains("/blobs/")),
        "{err:?}"
    );
    let err = hub
        .download_file("org/model", "main", "config.json")
        .unwrap_err();
    assert!(
        matches!(&err, Error::SizeMismatch { expected: 3, .. }),
        "{err:?}"
    );
    assert!(!repo_dir(tmp.path(), "org/model").join("snapshots").exists());
}

#[test]
fn concurrent_downloads_of_one_file_agree() {
    let repo = standard_repo();
    let server = MockHub::start(vec![repo.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let hub = hub(&server, tmp.path());
                s.spawn(move || hub.download_file("org/model", "main", "model.gguf"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    for p in &paths {
        assert_eq!(p, &paths[0]);
    }
    assert_eq!(
        fs::read(&paths[0]).unwrap(),
        repo.file("model.gguf").content
    );
}

#[test]
fn renamed_repo_relative_redirect_is_followed() {
    let repo = standard_repo();
    let server = MockHub::start(vec![repo.clone()]);
    server.rename("org/old-name", "org/model");
    let tmp = tempfile::tempdir().unwrap();
    let path = hub(&server, tmp.path())
        .download_file("org/old-name", "main", "config.json")
        .unwrap();
    assert!(path.starts_with(repo_dir(tmp.path(), "org/old-name")));
    assert_eq!(fs::read(path).unwrap(), repo.file("config.json").content);
}

#[test]
fn unknown_size_and_odd_names() {
    // A file name that needs percent-encoding, and a revision with slashes.
    let repo = MockRepo::new(
        "org/odd",
        COMMIT,
        vec![MockFile::regular("dir/a b+c.txt", bytes(1000, 9))],
    );
    let server = MockHub::start(vec![repo.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let hub = hub(&server, tmp.path());
    let path = hub
        .download_file("org/odd", "main", "dir/a b+c.txt")
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), repo.files[0].content);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/resolve/main/dir/a%20b%2Bc.txt"))
    );
    let err = hub
        .download_file("org/odd", "refs/pr/1", "dir/a b+c.txt")
        .unwrap_err();
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path.contains("/resolve/refs%2Fpr%2F1/"))
    );
    assert!(matches!(err, Error::RevisionNotFound { .. }), "{err:?}");
}
