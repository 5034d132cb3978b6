use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

#[derive(Debug, thiserror::Error)]
pub enum SshdError {
    #[error("{SSHD} is missing; install openssh-server (tests/install-deps does it as root)")]
    Missing,
    #[error("cannot prepare sshd: {0}")]
    Io(#[from] std::io::Error),
    #[error("`{command}` failed: {detail}")]
    Tool { command: String, detail: String },
    #[error("sshd did not start on {addr} after {attempts} attempts; its log:\n{log}")]
    NotListening {
        addr: SocketAddr,
        attempts: u32,
        log: String,
    },
}

/// OpenSSH's `sshd`, running on a free 127.0.0.x port with a throw-away host
/// key and client key, no PAM and no passwords; stopped when dropped. Several
/// can run at once, each on its own loopback address.
///
/// The user it admits logs in with `/bin/sh` and an empty home directory, so
/// no test passes or fails with what the machine's own `~/.bashrc` prints:
/// sshd runs in a private mount namespace where `/etc/passwd` is a copy with
/// that one entry changed (see [`Isolation`]).
#[derive(Debug)]
pub struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    addr: SocketAddr,
    user: String,
}

impl Sshd {
    pub fn start() -> Result<Self, SshdError> {
        if !Path::new(SSHD).exists() {
            return Err(SshdError::Missing);
        }
        let dir = tempfile::Builder::new()
            .prefix("nightshift-sshd")
            .tempdir()?;
        keygen(&dir.path().join("host_ed25519"))?;
        keygen(&dir.path().join("client_ed25519"))?;
        std::fs::copy(
            dir.path().join("client_ed25519.pub"),
            dir.path().join("authorized_keys"),
        )?;
        ensure_privsep_dir();
        let user = current_user()?;
        let passwd = write_passwd(dir.path(), &user)?;
        let mut last_log = String::new();
        const ATTEMPTS: u32 = 5;
        for _ in 0..ATTEMPTS {
            let addr = free_loopback_addr()?;
            let config = write_config(dir.path(), addr, &user)?;
            let log = std::fs::File::create(dir.path().join("sshd.log"))?;
            let mut child = Isolation::get()
                .command(&passwd, &config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            if wait_for_banner(addr, &mut child) {
                let sshd = Self {
                    dir,
                    child,
                    addr,
                    user,
                };
                sshd.write_known_hosts()?;
                return Ok(sshd);
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default();
        }
        Err(SshdError::NotListening {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            attempts: ATTEMPTS,
            log: last_log,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The user allowed to log in: whoever runs the tests.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Private key accepted by this server.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// The server's host public key, as an OpenSSH public key line.
    pub fn host_public_key(&self) -> Result<String, SshdError> {
        Ok(
            std::fs::read_to_string(self.dir.path().join("host_ed25519.pub"))?
                .trim()
                .to_string(),
        )
    }

    /// An OpenSSH `known_hosts` file that trusts exactly this server.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    fn write_known_hosts(&self) -> Result<(), SshdError> {
        let key = self.host_public_key()?;
        let mut fields = key.split_whitespace();
        let (kind, blob) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        let line = format!("[{}]:{} {kind} {blob}\n", self.addr.ip(), self.addr.port());
        std::fs::write(self.known_hosts(), line)?;
        Ok(())
    }

    /// Runs a command through this server with OpenSSH's own client and
    /// strict host-key checking, as a reference to compare nightshift with.
    pub fn ssh(&self, command: &str) -> Result<Output, SshdError> {
        let destination = format!("{}@{}", self.user, self.addr.ip());
        Ok(
            crate::openssh(&self.known_hosts(), &self.client_key(), self.addr.port())
                .arg(destination)
                .arg(command)
                .output()?,
        )
    }

    /// Also accepts the client key whose public half is at `public_key`.
    pub fn authorize(&self, public_key: &Path) -> Result<(), SshdError> {
        use std::io::Write;
        let key = std::fs::read_to_string(public_key)?;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))?;
        file.write_all(key.as_bytes())?;
        Ok(())
    }

    /// Kills the server and every session it serves, as a crash or an
    /// OOM kill would: connections drop mid-command.
    pub fn kill_all(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) -> Result<(), SshdError> {
    let output = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "nightshift-test",
            "-f",
        ])
        .arg(path)
        .output()?;
    if !output.status.success() {
        return Err(SshdError::Tool {
            command: "ssh-keygen".into(),
            detail: crate::describe(&output),
        });
    }
    Ok(())
}

/// How sshd is kept from the machine's own login set-up: the command that
/// starts it in a mount namespace of its own with a private `/etc/passwd`
/// bound over the real one. As root a mount namespace is enough; otherwise a
/// user namespace that maps the caller to itself carries it. Where the kernel
/// allows neither, sshd runs as it is and the login reads the user's own
/// start-up files (CI runs as root, where the namespace always works).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    MountNamespace,
    UserNamespace,
    None,
}

impl Isolation {
    /// What this machine allows, probed once per test process.
    pub fn get() -> Self {
        static PROBED: std::sync::OnceLock<Isolation> = std::sync::OnceLock::new();
        *PROBED.get_or_init(|| {
            [Self::MountNamespace, Self::UserNamespace]
                .into_iter()
                .find(|isolation| isolation.works())
                .unwrap_or(Self::None)
        })
    }

    fn unshare_args(self) -> &'static [&'static str] {
        match self {
            Self::MountNamespace => &["--mount"],
            Self::UserNamespace => &["--user", "--map-current-user", "--mount"],
            Self::None => &[],
        }
    }

    /// Whether a private `/etc/passwd` can be bound in this way.
    fn works(self) -> bool {
        Command::new("unshare")
            .args(self.unshare_args())
            .args(["--", "mount", "--bind", "/etc/passwd", "/etc/passwd"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// `sshd -D -e -f CONFIG`, seeing `passwd` as `/etc/passwd`. The shell
    /// execs sshd, so the child's pid is sshd's own.
    fn command(self, passwd: &Path, config: &Path) -> Command {
        if self == Self::None {
            let mut command = Command::new(SSHD);
            command.args(["-D", "-e", "-f"]).arg(config);
            return command;
        }
        let mut command = Command::new("unshare");
        command
            .args(self.unshare_args())
            .args([
                "--",
                "sh",
                "-c",
                r#"mount --bind "$1" /etc/passwd && exec "$2" -D -e -f "$3""#,
                "sh",
            ])
            .arg(passwd)
            .arg(SSHD)
            .arg(config);
        command
    }
}

/// A copy of `/etc/passwd` in which `user` logs in with `/bin/sh` and an
/// empty home directory under `dir`.
fn write_passwd(dir: &Path, user: &str) -> Result<PathBuf, SshdError> {
    let home = dir.join("home");
    std::fs::create_dir_all(&home)?;
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let mut found = false;
    let mut copy = String::with_capacity(passwd.len());
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() == 7 && fields[0] == user && !found {
            found = true;
            copy.push_str(&format!(
                "{}:{}:{}:{}:{}:{}:/bin/sh\n",
                fields[0],
                fields[1],
                fields[2],
                fields[3],
                fields[4],
                home.display()
            ));
        } else {
            copy.push_str(line);
            copy.push('\n');
        }
    }
    if !found {
        return Err(SshdError::Tool {
            command: "reading /etc/passwd".into(),
            detail: format!("no entry for {user}"),
        });
    }
    let path = dir.join("passwd");
    std::fs::write(&path, copy)?;
    Ok(path)
}

fn current_user() -> Result<String, SshdError> {
    let output = Command::new("id").arg("-un").output()?;
    if !output.status.success() {
        return Err(SshdError::Tool {
            command: "id -un".into(),
            detail: crate::describe(&output),
        });
    }
    Ok(crate::stdout(&output).trim().to_string())
}

/// sshd started as root insists on its privilege-separation directory, which
/// only exists on machines where the service has run once.
fn ensure_privsep_dir() {
    let _ = std::fs::create_dir_all("/run/sshd");
}

/// A free port on an address in 127.0.0.2-254 that differs between servers,
/// so tests see distinct hosts the way they would on a network.
fn free_loopback_addr() -> Result<SocketAddr, SshdError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) + std::process::id();
    let ip = Ipv4Addr::new(127, 0, 0, (2 + n % 253) as u8);
    let listener = TcpListener::bind((ip, 0))?;
    Ok(listener.local_addr()?)
}

fn write_config(dir: &Path, addr: SocketAddr, user: &str) -> Result<PathBuf, SshdError> {
    let path = dir.join("sshd_config");
    let config = format!(
        "Port {port}\n\
         ListenAddress {ip}\n\
         HostKey {dir}/host_ed25519\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         PidFile none\n\
         UsePAM no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         PermitRootLogin prohibit-password\n\
         StrictModes no\n\
         AllowUsers {user}\n\
         MaxSessions 10\n\
         LogLevel VERBOSE\n\
         Subsystem sftp internal-sftp\n",
        port = addr.port(),
        ip = addr.ip(),
        dir = dir.display(),
    );
    std::fs::write(&path, config)?;
    Ok(path)
}

/// Waits until sshd greets with its `SSH-2.0` banner, or exits.
fn wait_for_banner(addr: SocketAddr, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut banner = [0u8; 4];
            if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
