//! A throw-away PostgreSQL server for the store tests: `initdb` into a
//! temporary folder, `postgres` listening only on a Unix socket in that
//! folder (no TCP port: nothing else on the machine can reach it, and no
//! two tests' servers can meet), stopped and removed when dropped. PostgreSQL refuses to run
//! as root, and CI runs as root: then the server runs as `nobody`.
//! `scripts/setup --with-test-server` installs Debian's `postgresql`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PgServer {
    dir: tempfile::TempDir,
    child: Child,
}

/// The port names the socket file (`.s.PGSQL.5432`) in the server's own
/// folder; no TCP port is opened.
const PORT: u16 = 5432;

/// The folder of PostgreSQL's programs: the one `initdb` on PATH is in,
/// else the newest under Debian's /usr/lib/postgresql.
fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        return path
            .parent()
            .expect("a program is in a folder")
            .to_path_buf();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/setup --with-test-server installs it)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versions.sort_by_key(|b| {
        b.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .expect("PostgreSQL's initdb is installed (scripts/setup --with-test-server installs it)")
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL program, as `nobody` when the tests run as root.
fn program(name: &str) -> Command {
    let path = bin_dir().join(name);
    if running_as_root() {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(path);
        command
    } else {
        Command::new(path)
    }
}

impl PgServer {
    pub fn start() -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("cbtsim-pg-")
            .tempdir()
            .unwrap();
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown the server's folder to nobody");
        }
        let data = dir.path().join("data");
        let out = program("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "cbtsim", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = program("postgres")
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(PORT.to_string())
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "listen_addresses=", "-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        let mut server = PgServer { dir, child };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("postgres exited ({status}): {}", self.log());
            }
            if self.admin().is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections in 60 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn admin(&self) -> Result<postgres::Client, postgres::Error> {
        postgres::Client::connect(
            &format!(
                "host={} port={PORT} user=cbtsim dbname=postgres",
                self.dir.path().display()
            ),
            postgres::NoTls,
        )
    }

    /// A new, empty database on this server; its URL.
    pub fn database(&self, name: &str) -> String {
        self.admin()
            .unwrap()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        format!(
            "postgres://cbtsim@/{name}?host={}&port={PORT}&sslmode=disable",
            self.dir.path().display()
        )
    }

    /// Runs SQL on a database of this server (for what a test sets up or
    /// checks behind the store's back).
    pub fn execute(&self, url: &str, sql: &str) {
        postgres::Client::connect(url, postgres::NoTls)
            .unwrap()
            .batch_execute(sql)
            .unwrap();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGQUIT: the server stops at once (its data is thrown away).
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn a_throw_away_server_starts_and_holds_databases() {
    let server = PgServer::start();
    let url = server.database("smoke");
    server.execute(&url, "CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (1);");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let row = client.query_one("SELECT x FROM t", &[]).unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
}
