//! The store contract suite ([`gitstate_runtime::store::contract`]) against the file
//! store, each test in a temporary state directory. Its own tests (rotation of
//! `events.jsonl`, the bytes on disk, arbitrary files) are in `src/store/file/tests.rs`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use gitstate_core::EnvName;
use gitstate_runtime::store::Lock;
use gitstate_runtime::store::contract::{self, Harness};
use gitstate_runtime::{FileStore, StoreError};

/// The file store: one state directory per test; the lock of each open store is held
/// here until its process "crashes".
#[derive(Default)]
struct Files {
    locks: Mutex<BTreeMap<PathBuf, Lock>>,
}

impl Files {
    fn locks(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, Lock>> {
        self.locks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Appends `bytes` to the file `name` of `dir`.
fn append(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(dir.join(name)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

#[async_trait]
impl Harness for Files {
    type Store = FileStore;
    type Place = tempfile::TempDir;

    async fn place(&self, test: &str) -> Self::Place {
        tempfile::Builder::new().prefix(&format!("gitstate-contract-{test}-")).tempdir().unwrap()
    }

    async fn open(&self, place: &Self::Place) -> Result<FileStore, StoreError> {
        let lock = FileStore::lock(place.path())?;
        let store = FileStore::open(place.path())?;
        self.locks().insert(place.path().to_path_buf(), lock);
        Ok(store)
    }

    async fn crash(&self, store: FileStore) {
        self.locks().remove(store.dir());
        drop(store);
    }

    async fn torn_write(&self, place: &Self::Place, store: FileStore, env: &EnvName) {
        self.crash(store).await;
        let dir = place.path();
        let state = format!(r#"{{"env":{{"name":"{env}","state":{{"consecutive_probe_failures":9,"pha"#);
        append(dir, "state.log", state.as_bytes());
        let event = format!(r#"{{"at":"2027-01-15T08:00:09Z","environment":"{env}","event":"drift_dete"#);
        append(dir, "events.jsonl", event.as_bytes());
    }

    /// The environment's last line in `state.log`, or its entry in `state.json` when the
    /// log has none, given a phase that does not exist.
    async fn corrupt(&self, place: &Self::Place, env: &EnvName) -> String {
        let log = FileStore::log_path(place.path());
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let mine = |l: &String| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["env"]["name"] == env.as_str())
        };
        if let Some(i) = lines.iter().rposition(mine) {
            let mut v: serde_json::Value = serde_json::from_str(&lines[i]).unwrap();
            v["env"]["state"]["phase"] = 7.into();
            lines[i] = v.to_string();
            std::fs::write(&log, lines.join("\n") + "\n").unwrap();
            return format!("{}:{}", log.display(), i + 1);
        }
        let path = FileStore::state_path(place.path());
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(v["environments"].get(env.as_str()).is_some(), "no record of {env} to corrupt");
        v["environments"][env.as_str()]["phase"] = 7.into();
        std::fs::write(&path, v.to_string()).unwrap();
        path.display().to_string()
    }

    async fn stored(&self, place: &Self::Place) -> Vec<u8> {
        let read = |p: PathBuf| std::fs::read(p).unwrap_or_default();
        let mut bytes = read(FileStore::state_path(place.path()));
        bytes.extend(b"\n--- state.log ---\n");
        bytes.extend(read(FileStore::log_path(place.path())));
        bytes
    }

    async fn second_writer(&self, place: &Self::Place) -> Result<FileStore, StoreError> {
        // Should it get the lock (it must not), it keeps it: the suite sees it write.
        let lock = FileStore::lock(place.path())?;
        self.locks().insert(place.path().join("second"), lock);
        FileStore::open(place.path())
    }

    /// A file lock is held until the process that took it dies.
    async fn cut(&self, _place: &Self::Place, _store: &FileStore) -> bool {
        false
    }
}

#[tokio::test]
async fn the_file_store_keeps_the_store_contract() {
    contract::all(&Files::default()).await;
}
