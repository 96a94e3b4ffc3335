//! A throw-away PostgreSQL server for the store tests: `initdb` into a
//! temporary folder, `postgres` listening only on a Unix socket in that
//! folder (no TCP port: nothing else on the machine can reach it, and no
//! two tests' servers can meet), stopped and removed when dropped. PostgreSQL refuses to run
//! as root, and CI runs as root: then the server runs as `nobody`.
//! `scripts/setup --with-test-server` installs Debian's `postgresql`.

use super::util::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PgServer {
    dir: tempfile::TempDir,
    child: Child,
    /// The loopback port of a server that also takes TCP (TLS only, with
    /// a password): `start_with_tls`.
    tcp_port: Option<u16>,
}

/// What a server that also listens on TCP asks of a client there.
pub struct TcpAccess<'a> {
    /// The password of the user `cbtsim` (SCRAM).
    pub password: &'a str,
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

/// Gives a file to the user the server runs as, readable by it alone (the
/// server refuses a key others can read).
fn hand_to_server(file: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    if running_as_root() {
        let status = Command::new("chown")
            .arg("nobody:nogroup")
            .arg(file)
            .status()
            .unwrap();
        assert!(status.success());
    }
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
    /// A server on its Unix socket only, trusting its user there.
    pub fn start() -> PgServer {
        PgServer::start_with(None)
    }

    /// A server that also listens on a free loopback port, where it takes
    /// only TLS connections (a certificate of its own making) with the
    /// user's password.
    pub fn start_with_tls(access: TcpAccess<'_>) -> PgServer {
        PgServer::start_with(Some(access))
    }

    fn start_with(tcp: Option<TcpAccess<'_>>) -> PgServer {
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
        let mut initdb = program("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "cbtsim", "--no-sync", "-E", "UTF8"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"]);
        if let Some(access) = &tcp {
            let pwfile = dir.path().join("password");
            std::fs::write(&pwfile, access.password).unwrap();
            hand_to_server(&pwfile);
            initdb.arg(format!("--pwfile={}", pwfile.display()));
        }
        let out = initdb.output().expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut settings = vec!["listen_addresses=".to_string(), "fsync=off".to_string()];
        let mut tcp_port = None;
        if tcp.is_some() {
            // TLS only on TCP: pg_hba's host lines become hostssl lines.
            let hba = data.join("pg_hba.conf");
            let text = std::fs::read_to_string(&hba).unwrap();
            let text: String = text
                .lines()
                .map(|l| match l.strip_prefix("host ") {
                    Some(rest) => format!("hostssl {rest}\n"),
                    None => format!("{l}\n"),
                })
                .collect();
            std::fs::write(&hba, text).unwrap();
            let (key, cert) = (data.join("server.key"), data.join("server.crt"));
            let out = Command::new("openssl")
                .args([
                    "req",
                    "-new",
                    "-x509",
                    "-days",
                    "1",
                    "-nodes",
                    "-subj",
                    "/CN=localhost",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .expect("openssl makes a certificate");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            for file in [&key, &cert, &hba] {
                hand_to_server(file);
            }
            let port = free_port();
            tcp_port = Some(port);
            settings = vec![
                "listen_addresses=127.0.0.1".into(),
                "fsync=off".into(),
                "ssl=on".into(),
                format!("ssl_cert_file={}", cert.display()),
                format!("ssl_key_file={}", key.display()),
            ];
        }
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = program("postgres")
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(tcp_port.unwrap_or(PORT).to_string())
            .arg("-k")
            .arg(dir.path())
            .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        let mut server = PgServer {
            dir,
            child,
            tcp_port,
        };
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

    /// The port the socket file is named by (the TCP port when there is one).
    fn port(&self) -> u16 {
        self.tcp_port.unwrap_or(PORT)
    }

    fn admin(&self) -> Result<postgres::Client, postgres::Error> {
        postgres::Client::connect(
            &format!(
                "host={} port={} user=cbtsim dbname=postgres",
                self.dir.path().display(),
                self.port()
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
            "postgres://cbtsim@/{name}?host={}&port={}&sslmode=disable",
            self.dir.path().display(),
            self.port()
        )
    }

    /// The URL of a database over TCP (no password, no sslmode: the test
    /// adds what it means to try).
    pub fn tcp_url(&self, name: &str) -> String {
        let port = self.tcp_port.expect("started with TCP");
        format!("postgres://cbtsim@127.0.0.1:{port}/{name}")
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
