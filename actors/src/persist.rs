//! State that survives restarts: RPM/RPD usage, 429 pauses and circuit states, one JSON
//! file per key/model under `STATE_DIR`.
//!
//! Key/model actors hand snapshots to a [`StateStore`] at most once a second when their
//! state changed; one dedicated writer thread writes them atomically (temp file, fsync,
//! rename), so the request path never waits for the disk. At shutdown every actor's final
//! snapshot is written and flushed. A corrupt or unreadable file is reported and ignored
//! for that key/model; the rest loads.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::ids::KeyModelId;
use crate::key_model::circuit::CircuitSnapshot;
use crate::key_model::rate_window::RateSnapshot;

/// Snapshots waiting for the writer thread, at most.
const CHANNEL_BOUND: usize = 4096;

/// Everything persisted for one key/model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairSnapshot {
    /// Which pair.
    pub id: KeyModelId,
    /// When it was taken.
    pub saved_at: Millis,
    /// RPM/RPD counts and the 429 pause.
    pub rate: RateSnapshot,
    /// The circuit breaker.
    pub circuit: CircuitSnapshot,
}

enum Cmd {
    Save(Box<PairSnapshot>),
    /// A file of another owner, in a subdirectory: `(subdirectory, name, bytes)`.
    File(&'static str, String, Vec<u8>),
    Flush(mpsc::Sender<()>),
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    tx: SyncSender<Cmd>,
    dir: Arc<PathBuf>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("dir", &self.dir)
            .finish()
    }
}

/// A file name for a pair that is unique and safe on any file system.
pub fn file_name(id: &KeyModelId) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
                    (b as char).to_string()
                } else {
                    format!("_{b:02x}")
                }
            })
            .collect::<String>()
    };
    format!(
        "{}__{}__{}.json",
        enc(&id.provider),
        enc(&id.key_id),
        enc(&id.model)
    )
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))
}

fn writer(dir: Arc<PathBuf>, rx: Receiver<Cmd>) {
    for cmd in rx {
        match cmd {
            Cmd::Save(snap) => {
                let name = file_name(&snap.id);
                // Compact: a busy pair's snapshot holds up to 60,000 dispatch runs, and
                // indenting each of them made the file and its writing several times larger.
                let result = serde_json::to_vec(&*snap)
                    .map_err(std::io::Error::other)
                    .and_then(|bytes| write_atomically(&dir, &name, &bytes));
                if let Err(e) = result {
                    log::error!("cannot write state file {name}: {e}");
                }
            }
            Cmd::File(sub, name, bytes) => {
                let dir = dir.join(sub);
                let result =
                    fs::create_dir_all(&dir).and_then(|()| write_atomically(&dir, &name, &bytes));
                if let Err(e) = result {
                    log::error!("cannot write state file {sub}/{name}: {e}");
                }
            }
            Cmd::Flush(ack) => {
                let _ = ack.send(());
            }
        }
    }
}

/// What was found in the state directory at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Snapshots by pair.
    pub snapshots: HashMap<KeyModelId, PairSnapshot>,
    /// Files that could not be used, with the reason.
    pub problems: Vec<String>,
}

impl StateStore {
    /// Creates the directory if needed, reads every snapshot in it, and starts the writer.
    pub fn open(dir: &Path) -> std::io::Result<(Self, Loaded)> {
        fs::create_dir_all(dir)?;
        let mut loaded = Loaded::default();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let is_state = path.extension().is_some_and(|e| e == "json")
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !is_state {
                continue;
            }
            let parsed = fs::read(&path).map_err(|e| e.to_string()).and_then(|b| {
                serde_json::from_slice::<PairSnapshot>(&b).map_err(|e| e.to_string())
            });
            match parsed {
                Ok(snap) => {
                    loaded.snapshots.insert(snap.id.clone(), snap);
                }
                Err(e) => {
                    let msg = format!("{}: {e}; ignored", path.display());
                    log::error!("state file {msg}");
                    loaded.problems.push(msg);
                }
            }
        }
        let (tx, rx) = mpsc::sync_channel(CHANNEL_BOUND);
        let dir = Arc::new(dir.to_path_buf());
        let for_thread = dir.clone();
        std::thread::Builder::new()
            .name("bkvy-state-writer".into())
            .spawn(move || writer(for_thread, rx))?;
        Ok((Self { tx, dir }, loaded))
    }

    /// Queues a snapshot for writing; never blocks. A full queue drops it (the next
    /// snapshot of that pair supersedes it anyway).
    pub fn save(&self, snap: PairSnapshot) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Cmd::Save(Box::new(snap))) {
            log::warn!("state writer busy: a snapshot was skipped");
        }
    }

    /// Writes a snapshot and waits until everything queued before it is on disk (blocking:
    /// call from a blocking context at shutdown).
    pub fn save_blocking(&self, snap: PairSnapshot) {
        let _ = self.tx.send(Cmd::Save(Box::new(snap)));
    }

    /// Queues a file of another owner for writing, as `<dir>/<sub>/<name>` (atomically, like
    /// the snapshots; subdirectories are not read as snapshots); never blocks.
    /// Returns whether it was queued.
    pub fn save_file(&self, sub: &'static str, name: &str, bytes: Vec<u8>) -> bool {
        match self.tx.try_send(Cmd::File(sub, name.to_owned(), bytes)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                log::warn!("state writer busy: {sub}/{name} was not saved this time");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Like [`save_file`](Self::save_file), waiting for room in the queue (blocking: call
    /// from a blocking context at shutdown). Returns whether it was queued.
    pub fn save_file_blocking(&self, sub: &'static str, name: &str, bytes: Vec<u8>) -> bool {
        self.tx.send(Cmd::File(sub, name.to_owned(), bytes)).is_ok()
    }

    /// Reads back a file written with [`save_file`](Self::save_file) (`None`: there is
    /// none yet).
    pub fn read_file(&self, sub: &str, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(sub).join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits until everything queued so far is written, at most `timeout` (blocking).
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = mpsc::channel();
        if self.tx.send(Cmd::Flush(ack)).is_err() {
            return false;
        }
        done.recv_timeout(timeout).is_ok()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_model::circuit::{Circuit, CircuitConfig};
    use crate::key_model::rate_window::RateWindow;

    fn snap(model: &str) -> PairSnapshot {
        let mut w = RateWindow::new(10, 100, chrono_tz::Tz::UTC, 1_000);
        w.record(1_000);
        PairSnapshot {
            id: KeyModelId::new("p/x", "k", model),
            saved_at: 1_000,
            rate: w.snapshot(),
            circuit: Circuit::new(CircuitConfig::default()).snapshot(),
        }
    }

    #[test]
    fn file_names_are_unique_and_safe() {
        let a = file_name(&KeyModelId::new("a_b", "c", "d"));
        let b = file_name(&KeyModelId::new("a", "b_c", "d"));
        assert_ne!(a, b);
        let odd = file_name(&KeyModelId::new("p/../x", "k", "llama3.2:3b"));
        assert!(!odd.contains('/') && !odd.contains(':'), "{odd}");
    }

    #[test]
    fn saves_load_back_and_corrupt_files_are_skipped() {
        let dir = std::env::temp_dir().join(format!("bkvy-state-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (store, loaded) = StateStore::open(&dir).unwrap();
        assert!(loaded.snapshots.is_empty());
        store.save(snap("m1"));
        store.save(snap("m2"));
        assert!(store.flush(Duration::from_secs(5)));
        fs::write(dir.join("broken.json"), b"{not json").unwrap();
        let (_store, loaded) = StateStore::open(&dir).unwrap();
        assert_eq!(loaded.snapshots.len(), 2);
        assert_eq!(loaded.problems.len(), 1);
        let back = &loaded.snapshots[&KeyModelId::new("p/x", "k", "m1")];
        assert_eq!(back, &snap("m1"));
        let _ = fs::remove_dir_all(&dir);
    }
}
