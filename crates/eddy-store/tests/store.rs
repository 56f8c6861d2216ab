//! One suite for every `SwapStore`: run on SQLite (a file in a temp dir) and on a real
//! PostgreSQL server this test starts on 127.0.0.1 (initdb + postgres from the system's
//! PostgreSQL install, which `.ci/run` provides), or on `EDDY_TEST_POSTGRES_URL` when set.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_core::types::SwapId;
use eddy_store::{ListFilter, NewSwap, PgStore, SqliteStore, StateUpdate, StoreError, SwapKind, SwapStore};
use serde_json::json;

fn id(n: u8) -> SwapId {
    SwapId([n; 32])
}

fn new_swap(n: u8, kind: SwapKind) -> NewSwap {
    NewSwap {
        id: id(n),
        kind,
        state_name: "created".into(),
        terminal: false,
        state: json!({"state": "created", "amount_sat": 250_000 + u64::from(n), "preimage": "11".repeat(32)}),
        event: json!({"event": "create", "by": "test"}),
    }
}

fn update(name: &str, terminal: bool, n: u64) -> StateUpdate {
    StateUpdate {
        state_name: name.into(),
        terminal,
        state: json!({"state": name, "step": n}),
        event: json!({"event": format!("to {name}"), "step": n}),
    }
}

/// The suite; `store` must be empty.
async fn suite(store: Arc<dyn SwapStore>) {
    // Create + read back exactly.
    let a = new_swap(1, SwapKind::LoopOutClient);
    let rec = store.create(&a).await.expect("create");
    assert_eq!(rec.version, 1);
    let got = store.get(&id(1)).await.expect("get").expect("exists");
    assert_eq!(got.state, a.state);
    assert_eq!(
        (got.kind, got.state_name.as_str(), got.terminal, got.version),
        (SwapKind::LoopOutClient, "created", false, 1)
    );
    assert_eq!(got, rec);
    assert_eq!(store.get(&id(99)).await.expect("get"), None);

    // A replayed create is refused and changes nothing.
    let mut replay = a.clone();
    replay.state = json!({"state": "hijacked"});
    assert_eq!(store.create(&replay).await, Err(StoreError::Duplicate(id(1))));
    assert_eq!(store.get(&id(1)).await.expect("get").expect("exists").state, a.state);
    assert_eq!(store.events(&id(1)).await.expect("events").len(), 1);

    // Transitions: state and event together, versions in order.
    let r2 = store
        .transition(&id(1), 1, &update("paid", false, 2))
        .await
        .expect("t1");
    assert_eq!((r2.version, r2.state_name.as_str()), (2, "paid"));
    let r3 = store
        .transition(&id(1), 2, &update("published", false, 3))
        .await
        .expect("t2");
    assert_eq!(r3.version, 3);
    assert_eq!(r3.state, json!({"state": "published", "step": 3}));
    assert_eq!(r3.created_at, rec.created_at);
    // A stale writer loses and changes nothing.
    assert_eq!(
        store.transition(&id(1), 2, &update("stale", true, 9)).await,
        Err(StoreError::Conflict {
            id: id(1),
            expected: 2,
            actual: 3
        })
    );
    assert_eq!(store.get(&id(1)).await.expect("get").expect("exists"), r3);
    assert_eq!(
        store.transition(&id(42), 1, &update("x", false, 0)).await,
        Err(StoreError::NotFound(id(42)))
    );
    let events = store.events(&id(1)).await.expect("events");
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(events[0].event, a.event);
    assert_eq!(events[2].event, json!({"event": "to published", "step": 3}));

    // Listing: active excludes terminal swaps; oldest first.
    store
        .create(&new_swap(2, SwapKind::LoopInServer))
        .await
        .expect("create 2");
    store
        .create(&new_swap(3, SwapKind::LoopOutServer))
        .await
        .expect("create 3");
    store
        .transition(&id(2), 1, &update("refunded", true, 2))
        .await
        .expect("terminal");
    let all = store.list(ListFilter::All).await.expect("all");
    assert_eq!(all.len(), 3);
    let active: Vec<SwapId> = store
        .list(ListFilter::Active)
        .await
        .expect("active")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(active.len(), 2);
    assert!(active.contains(&id(1)) && active.contains(&id(3)) && !active.contains(&id(2)));

    // Concurrent writers from the same version: exactly one wins, the event log has no gap.
    let mut tasks = vec![];
    for w in 0..8u64 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.transition(&id(3), 1, &update("raced", false, w)).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(r) => {
                wins += 1;
                assert_eq!(r.version, 2);
            }
            Err(StoreError::Conflict { actual: 2, .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.events(&id(3)).await.expect("events").len(), 2);

    // Meta values.
    assert_eq!(store.get_meta("watcher_tip").await.expect("meta"), None);
    store.set_meta("watcher_tip", "120").await.expect("set");
    store.set_meta("watcher_tip", "121").await.expect("overwrite");
    assert_eq!(
        store.get_meta("watcher_tip").await.expect("meta").as_deref(),
        Some("121")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("eddy.sqlite");
    let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
    suite(store.clone()).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the store holds preimages and keys");
    }
    // Reopen: everything is there, migrations do not run twice.
    store.close().await;
    drop(store);
    let again = SqliteStore::open(&path).await.expect("reopen");
    let rec = again.get(&id(1)).await.expect("get").expect("kept");
    assert_eq!((rec.version, rec.state_name.as_str()), (3, "published"));
    assert_eq!(again.events(&id(1)).await.expect("events").len(), 3);
    assert_eq!(
        again.get_meta("watcher_tip").await.expect("meta").as_deref(),
        Some("121")
    );
}

/// A PostgreSQL server for the test's lifetime.
struct PgServer {
    child: Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (scripts/install-deps.sh installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("no PostgreSQL server binary under /usr/lib/postgresql")
}

fn as_postgres_user(cmd: &std::path::Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        // PostgreSQL refuses to run as root: run it as the `postgres` system user.
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        Command::new(cmd)
    }
}

fn start_pg() -> PgServer {
    let bin = pg_bin();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let _ = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status();
    let ok = as_postgres_user(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "eddy", "--no-sync", "-E", "UTF8"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("initdb");
    assert!(ok.success(), "initdb failed");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let child = as_postgres_user(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir.path())
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postgres");
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "postgres did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    PgServer {
        child,
        _dir: dir,
        url: format!("postgres://eddy@127.0.0.1:{port}/postgres"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store() {
    let server = match std::env::var("EDDY_TEST_POSTGRES_URL") {
        Ok(_) => None,
        Err(_) => Some(tokio::task::spawn_blocking(start_pg).await.expect("start postgres")),
    };
    let base = std::env::var("EDDY_TEST_POSTGRES_URL")
        .ok()
        .or_else(|| server.as_ref().map(|s| s.url.clone()))
        .expect("url");
    // A fresh database per run.
    let db = format!("eddy_test_{}", rand::random::<u32>());
    {
        use sqlx::Executor;
        let pool = sqlx::PgPool::connect(&base).await.expect("admin pool");
        pool.execute(format!("CREATE DATABASE {db}").as_str())
            .await
            .expect("create db");
        pool.close().await;
    }
    let url = format!("{}/{db}", base.rsplit_once('/').map(|(a, _)| a).unwrap_or(&base));
    let store = Arc::new(PgStore::connect(&url).await.expect("connect"));
    suite(store.clone()).await;
    store.close().await;
    let again = PgStore::connect(&url)
        .await
        .expect("reconnect, migrations already applied");
    let rec = again.get(&id(1)).await.expect("get").expect("kept");
    assert_eq!((rec.version, rec.state_name.as_str()), (3, "published"));
    again.close().await;
    drop(server);
}

/// The notifying wrapper passes the whole suite through and announces exactly the writes that
/// committed (creates and transitions; not refused ones, not reads), in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifying_store_announces_committed_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = Arc::new(SqliteStore::open(&dir.path().join("eddy.sqlite")).await.expect("open"));
    let store = Arc::new(eddy_store::NotifyingStore::new(inner, 16));
    let mut changes = store.subscribe();
    store
        .create(&new_swap(7, SwapKind::LoopInClient))
        .await
        .expect("create");
    assert_eq!(
        store.create(&new_swap(7, SwapKind::LoopInClient)).await,
        Err(StoreError::Duplicate(id(7)))
    );
    let r = store
        .transition(&id(7), 1, &update("funding", false, 1))
        .await
        .expect("move");
    assert!(matches!(
        store.transition(&id(7), 1, &update("stale", false, 2)).await,
        Err(StoreError::Conflict { .. })
    ));
    store.get(&id(7)).await.expect("get");
    store.set_meta("k", "v").await.expect("meta");
    assert_eq!(r.version, 2);
    assert_eq!(changes.try_recv(), Ok(id(7)), "the create");
    assert_eq!(changes.try_recv(), Ok(id(7)), "the transition");
    assert!(changes.try_recv().is_err(), "nothing for refusals and reads");
    // And it is a complete store.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let fresh = Arc::new(SqliteStore::open(&dir2.path().join("eddy.sqlite")).await.expect("open"));
    suite(Arc::new(eddy_store::NotifyingStore::new(fresh, 1))).await;
}
