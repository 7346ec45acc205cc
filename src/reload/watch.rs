//! The file watch: a change to the config file or any file the live
//! snapshot was built from (certificates, keys, CA bundles, CRLs, allowlists,
//! secrets) asks for a reload once the changes have settled. Directories are
//! watched rather than files, so a file replaced by rename — what editors,
//! `cp`, cert-manager and Kubernetes' `..data` symlink swap do — is seen.

use super::{Live, Reloader};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Whether an event can change what a snapshot is built from: writes,
/// creations, removals, renames — not the reads a reload itself makes.
fn relevant(ev: &notify::Event, files: &BTreeSet<PathBuf>) -> bool {
    use notify::event::{AccessKind, AccessMode};
    let kind = matches!(
        ev.kind,
        EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    );
    kind && ev.paths.iter().any(|p| {
        files.contains(p)
            // Kubernetes swaps a `..data` symlink to update a mounted secret.
            || p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".."))
    })
}

/// The files a snapshot was built from, and the directories holding them.
fn watched(config: &Path, live: &Live) -> (BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
    let rt = live.current();
    let files: BTreeSet<PathBuf> = std::iter::once(config.to_path_buf())
        .chain(rt.files.iter().map(|(f, _)| absolute(f)))
        .collect();
    let dirs = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    (files, dirs)
}

/// Starts watching at once (a change made right after start-up is seen)
/// and reloads until the gateway stops; `debounce` is how long changes must
/// settle before the reload.
pub fn spawn(
    live: Arc<Live>,
    config: PathBuf,
    reloader: Reloader,
    debounce: Duration,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let _ = tx.send(ev);
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(target: "sealgate", error = %e, "cannot watch the configuration files; reload with SIGHUP or POST /reload");
            return tokio::spawn(async {});
        }
    };
    let config = absolute(&config);
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut files = watch_now(&mut watcher, &mut dirs, &config, &live);
    tokio::spawn(async move {
        loop {
            loop {
                let Some(ev) = rx.recv().await else {
                    return;
                };
                if relevant(&ev, &files) {
                    break;
                }
            }
            // Let a burst of writes (an editor, a certificate renewal writing
            // cert, key and chain) settle into one reload; other files in
            // the same directories do not hold it back.
            let mut settle = tokio::time::Instant::now() + debounce;
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(ev) if relevant(&ev, &files) => settle = tokio::time::Instant::now() + debounce,
                        Some(_) => {}
                        None => return,
                    },
                    _ = tokio::time::sleep_until(settle) => break,
                }
            }
            // The gateway logs the outcome either way.
            let _ = reloader.reload("file_watch").await;
            files = watch_now(&mut watcher, &mut dirs, &config, &live);
        }
    })
}

/// Watches the directories the live snapshot needs (and no others); returns
/// the files to react to.
fn watch_now(
    watcher: &mut notify::RecommendedWatcher,
    dirs: &mut BTreeSet<PathBuf>,
    config: &Path,
    live: &Live,
) -> BTreeSet<PathBuf> {
    let (files, want) = watched(config, live);
    for d in dirs.difference(&want) {
        let _ = watcher.unwatch(d);
    }
    for d in want.difference(dirs) {
        if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
            tracing::warn!(target: "sealgate", dir = %d.display(), error = %e, "cannot watch a directory of configuration files");
        }
    }
    *dirs = want;
    files
}
