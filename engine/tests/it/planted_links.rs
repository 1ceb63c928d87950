//! Someone who can write into the output directory plants links (or other odd files) where a
//! fetch will write: at the partial name, at the final name, in place of a directory. The fetch
//! refuses, says which path and why, and no file outside the output directory changes.

use std::os::unix::fs::symlink;
use std::path::Path;

use swarm_engine::{Error, FetchOptions, FileId, Node, Progress, Replace};

use crate::common::*;

/// A tracker, a seeder of `dir/name.bin` and a fetcher, and a victim file outside the output.
struct Setup {
    _tracker: swarm_tracker::Tracker,
    _seeder: Node,
    fetcher: Node,
    id: FileId,
    data: Vec<u8>,
    out: std::path::PathBuf,
    victim: std::path::PathBuf,
}

const PRECIOUS: &[u8] = b"the user's own file, which no fetch may touch";

async fn setup(tmp: &Path, name: &str) -> Setup {
    let tracker = start_tracker(tmp).await;
    let data = content(5 * CHUNK as usize + 17, 3);
    let share = tmp.join("share");
    write(&share, name, &data);
    let seeder = start_node(tmp, "seeder", pinned(&tracker), None).await;
    let id = seeder.seed_dir(&share, CHUNK, &Progress::default()).await.unwrap()[0].id;
    let fetcher = start_node(tmp, "fetcher", pinned(&tracker), None).await;
    let victim = tmp.join("victim.txt");
    std::fs::write(&victim, PRECIOUS).unwrap();
    let out = tmp.join("out");
    std::fs::create_dir_all(&out).unwrap();
    Setup {
        _tracker: tracker,
        _seeder: seeder,
        fetcher,
        id,
        data,
        out,
        victim,
    }
}

impl Setup {
    async fn fetch(&self, force: bool) -> Result<(), Error> {
        let options = FetchOptions {
            replace: if force { Replace::Always } else { Replace::Never },
            ..options(&self.out)
        };
        self.fetcher.fetch(self.id, options).await.map(|_| ())
    }

    fn victim_untouched(&self) {
        assert_eq!(
            std::fs::read(&self.victim).unwrap(),
            PRECIOUS,
            "the victim file changed"
        );
    }
}

fn assert_unsafe(result: Result<(), Error>, path: &Path, words: &str) {
    match result {
        Err(Error::Unsafe { path: got, why }) => {
            assert_eq!(got, path);
            assert!(why.contains(words), "{why}");
        }
        other => panic!("expected a refusal for {}, got {other:?}", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_at_the_partial_name_is_refused_and_its_target_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path(), "x.bin").await;
    let partial = s.out.join(".x.bin.swarm-part");
    symlink(&s.victim, &partial).unwrap();
    assert_unsafe(s.fetch(false).await, &partial, "symbolic link");
    s.victim_untouched();
    assert!(!s.out.join("x.bin").exists());
    assert!(std::fs::symlink_metadata(&partial).unwrap().file_type().is_symlink());

    // A hard link to the victim is refused too: writing it would change the victim.
    std::fs::remove_file(&partial).unwrap();
    std::fs::hard_link(&s.victim, &partial).unwrap();
    assert_unsafe(s.fetch(false).await, &partial, "hard links");
    s.victim_untouched();

    // With the planted file gone, the same fetch works.
    std::fs::remove_file(&partial).unwrap();
    s.fetch(false).await.unwrap();
    assert_eq!(std::fs::read(s.out.join("x.bin")).unwrap(), s.data);
    s.victim_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_at_the_final_name_is_never_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path(), "x.bin").await;
    let target = s.out.join("x.bin");
    symlink(&s.victim, &target).unwrap();
    assert_unsafe(s.fetch(false).await, &target, "symbolic link");
    s.victim_untouched();

    // A dangling link is named as a link, not as a file with other content.
    std::fs::remove_file(&target).unwrap();
    symlink(tmp.path().join("nowhere"), &target).unwrap();
    assert_unsafe(s.fetch(false).await, &target, "symbolic link");
    assert!(!tmp.path().join("nowhere").exists());

    // --force replaces the link itself, never what it points to.
    std::fs::remove_file(&target).unwrap();
    symlink(&s.victim, &target).unwrap();
    s.fetch(true).await.unwrap();
    assert!(std::fs::symlink_metadata(&target).unwrap().is_file());
    assert_eq!(std::fs::read(&target).unwrap(), s.data);
    s.victim_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_in_place_of_a_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path(), "sub/deeper/x.bin").await;
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("deeper")).unwrap();
    symlink(&elsewhere, s.out.join("sub")).unwrap();
    assert_unsafe(s.fetch(false).await, &s.out.join("sub"), "symbolic link");
    assert_eq!(
        std::fs::read_dir(elsewhere.join("deeper")).unwrap().count(),
        0,
        "nothing written outside"
    );

    // A file where a directory must be is named too.
    std::fs::remove_file(s.out.join("sub")).unwrap();
    std::fs::write(s.out.join("sub"), b"a file").unwrap();
    assert_unsafe(s.fetch(false).await, &s.out.join("sub"), "in the way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_name_that_is_not_a_regular_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path(), "x.bin").await;
    let partial = s.out.join(".x.bin.swarm-part");
    std::fs::create_dir(&partial).unwrap();
    assert_unsafe(s.fetch(false).await, &partial, "not a regular file");
    assert!(partial.is_dir());
}
