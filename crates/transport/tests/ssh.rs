//! Tier 2: the SSH transport against OpenSSH's own sshd on loopback. Every
//! error kind is provoked for real.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nightshift_testbed::Sshd;
use nightshift_transport::{
    Command, Endpoint, ExitStatus, KnownHosts, Session, SshConfig, Stream, TransportError,
    Unreachable,
};

fn endpoint(sshd: &Sshd) -> Endpoint {
    Endpoint {
        name: "loop".into(),
        address: sshd.addr().ip().to_string(),
        port: sshd.addr().port(),
        user: sshd.user().into(),
        identity: Some(sshd.client_key()),
        jump: None,
    }
}

fn config(known_hosts: &std::path::Path) -> SshConfig {
    let mut config = SshConfig::new(KnownHosts::load(known_hosts, &[]).expect("known_hosts"));
    config.agent = None;
    config.connect_timeout = Duration::from_secs(5);
    config
}

async fn connect(sshd: &Sshd) -> Session {
    Session::connect(&endpoint(sshd), &config(&sshd.known_hosts()))
        .await
        .unwrap_or_else(|err| panic!("connect: {err}\nsshd log:\n{}", sshd.log()))
}

async fn run(
    session: &Session,
    command: Command,
) -> (
    Result<nightshift_transport::Output, TransportError>,
    Vec<(Stream, String)>,
) {
    let mut lines = Vec::new();
    let result = session
        .exec(&command, &mut |s, l| lines.push((s, l.to_string())))
        .await;
    (result, lines)
}

#[tokio::test]
async fn runs_commands_with_streams_status_and_environment() {
    let sshd = Sshd::start().expect("sshd");
    let session = connect(&sshd).await;
    let command = Command::new("echo \"out $GREETING\"; echo err >&2; exit 4")
        .env("GREETING", "it's me", false);
    let (out, lines) = run(&session, command).await;
    let out = out.expect("runs");
    assert_eq!(out.status, ExitStatus::Code(4));
    assert_eq!(out.stdout.text(), "out it's me\n");
    assert_eq!(
        out.stderr.text(),
        "err\n",
        "the process-group marker is not output"
    );
    assert_eq!(
        lines,
        [
            (Stream::Stdout, "out it's me".into()),
            (Stream::Stderr, "err".into())
        ]
    );

    let (out, _) = run(&session, Command::new("kill -s KILL $$")).await;
    assert_eq!(out.expect("runs").status, ExitStatus::Signal("KILL".into()));
    session.close().await;
}

#[tokio::test]
async fn two_hundred_commands_share_one_connection() {
    let sshd = Sshd::start().expect("sshd");
    let session = connect(&sshd).await;
    for i in 0..200 {
        let (out, _) = run(&session, Command::new(format!("echo {i}"))).await;
        assert_eq!(
            out.unwrap_or_else(|e| panic!("command {i}: {e}"))
                .stdout
                .text(),
            format!("{i}\n")
        );
    }
    // And 40 at once, more than sshd's MaxSessions of 10.
    let session = std::sync::Arc::new(session);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let session = session.clone();
        set.spawn(async move {
            let out = session
                .exec(
                    &Command::new(format!("sleep 0.1; echo {i}")),
                    &mut |_, _| {},
                )
                .await;
            (i, out)
        });
    }
    while let Some(joined) = set.join_next().await {
        let (i, out) = joined.expect("task");
        assert_eq!(
            out.expect("concurrent command").stdout.text(),
            format!("{i}\n")
        );
    }
}

#[tokio::test]
async fn an_unknown_host_is_refused_with_its_fingerprint() {
    let sshd = Sshd::start().expect("sshd");
    let empty = tempfile::NamedTempFile::new().expect("temp");
    let err = Session::connect(&endpoint(&sshd), &config(empty.path()))
        .await
        .expect_err("unknown host");
    let TransportError::HostKeyUnknown {
        fingerprint,
        key_type,
        ..
    } = &err
    else {
        panic!("wrong error: {err}");
    };
    assert_eq!(key_type, "ED25519");
    assert_eq!(fingerprint, &openssh_fingerprint(&sshd));
    assert!(
        err.to_string().contains("nightshift hosts trust loop"),
        "{err}"
    );
    assert_eq!(err.kind(), "host_key_unknown");
}

#[tokio::test]
async fn a_changed_host_key_names_the_file_and_line() {
    let sshd = Sshd::start().expect("sshd");
    let other = Sshd::start().expect("second sshd");
    let known = tempfile::NamedTempFile::new().expect("temp");
    // Line 2 claims this server's address with the other server's key.
    let other_key = other.host_public_key().expect("key");
    let text = format!(
        "# fleet\n[{}]:{} {other_key}\n",
        sshd.addr().ip(),
        sshd.addr().port()
    );
    std::fs::write(known.path(), text).expect("write");
    let err = Session::connect(&endpoint(&sshd), &config(known.path()))
        .await
        .expect_err("changed key");
    let TransportError::HostKeyChanged { file, line, .. } = &err else {
        panic!("wrong error: {err}");
    };
    assert_eq!((file, *line), (&known.path().to_path_buf(), 2));
    assert_eq!(err.kind(), "host_key_changed");
}

#[tokio::test]
async fn a_revoked_host_key_is_refused() {
    let sshd = Sshd::start().expect("sshd");
    let known = tempfile::NamedTempFile::new().expect("temp");
    let key = sshd.host_public_key().expect("key");
    std::fs::write(
        known.path(),
        format!(
            "@revoked * {key}\n[{}]:{} {key}\n",
            sshd.addr().ip(),
            sshd.addr().port()
        ),
    )
    .expect("write");
    let err = Session::connect(&endpoint(&sshd), &config(known.path()))
        .await
        .expect_err("revoked");
    assert!(
        matches!(err, TransportError::HostKeyRevoked { line: 1, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_key_fails_authentication() {
    let sshd = Sshd::start().expect("sshd");
    let stranger = Sshd::start().expect("another sshd, for its client key");
    let mut endpoint = endpoint(&sshd);
    endpoint.identity = Some(stranger.client_key());
    let err = Session::connect(&endpoint, &config(&sshd.known_hosts()))
        .await
        .expect_err("wrong key");
    assert!(matches!(err, TransportError::AuthFailed { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&stranger.client_key().display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn a_closed_port_is_refused_and_a_silent_one_times_out() {
    let sshd = Sshd::start().expect("sshd");
    let mut closed = endpoint(&sshd);
    let listener = std::net::TcpListener::bind((sshd.addr().ip(), 0)).expect("bind");
    closed.port = listener.local_addr().expect("addr").port();
    drop(listener);
    let err = Session::connect(&closed, &config(&sshd.known_hosts()))
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            TransportError::Unreachable {
                reason: Unreachable::Refused,
                ..
            }
        ),
        "{err}"
    );

    // A listener that never speaks SSH: the connect timeout must end it.
    let silent = std::net::TcpListener::bind((sshd.addr().ip(), 0)).expect("bind");
    let mut endpoint = endpoint(&sshd);
    endpoint.port = silent.local_addr().expect("addr").port();
    let mut config = config(&sshd.known_hosts());
    config.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = Session::connect(&endpoint, &config)
        .await
        .expect_err("timeout");
    assert!(
        matches!(
            err,
            TransportError::Unreachable {
                reason: Unreachable::TimedOut(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn a_timeout_stops_the_remote_process_tree() {
    let sshd = Sshd::start().expect("sshd");
    let session = connect(&sshd).await;
    let marker = format!("sleep 58.{}", std::process::id());
    let command =
        Command::new(format!("sh -c '{marker}; true' & wait")).timeout(Duration::from_millis(500));
    let started = Instant::now();
    let (out, _) = run(&session, command).await;
    assert_eq!(out.expect_err("must time out").kind(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(6));
    // sshd runs on this machine, so its processes are visible here.
    nightshift_testbed::assert_nothing_left(&marker);
    // The connection is still good for the next command.
    assert!(
        run(&session, Command::new("true"))
            .await
            .0
            .expect("runs")
            .status
            .success()
    );
}

#[tokio::test]
async fn cancelling_stops_the_remote_process_tree() {
    let sshd = Sshd::start().expect("sshd");
    let session = connect(&sshd).await;
    let marker = format!("sleep 57.{}", std::process::id());
    let token = tokio_util::sync::CancellationToken::new();
    let command = Command::new(format!("sh -c '{marker}; true' & wait"))
        .timeout(Duration::from_secs(30))
        .cancel_on(token.clone());
    let started = Instant::now();
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel();
    };
    let ((out, _), ()) = tokio::join!(run(&session, command), canceller);
    assert_eq!(out.expect_err("must be cancelled").kind(), "cancelled");
    assert!(started.elapsed() < Duration::from_secs(6));
    nightshift_testbed::assert_nothing_left(&marker);
}

#[tokio::test]
async fn sshd_killed_mid_command_is_a_lost_connection() {
    let mut sshd = Sshd::start().expect("sshd");
    let session = connect(&sshd).await;
    let command = Command::new("echo started; sleep 30");
    let mut ignore = |_: Stream, _: &str| {};
    let running = session.exec(&command, &mut ignore);
    let killer = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sshd.kill_all();
    };
    let (out, ()) = tokio::join!(running, killer);
    let err = out.expect_err("connection lost");
    assert_eq!(err.kind(), "connection_lost", "{err}");
}

#[tokio::test]
async fn a_jump_host_tunnels_to_the_target() {
    let bastion = Sshd::start().expect("bastion");
    let target = Sshd::start().expect("target");
    let known = tempfile::NamedTempFile::new().expect("temp");
    let both = format!(
        "{}{}",
        std::fs::read_to_string(bastion.known_hosts()).expect("read"),
        std::fs::read_to_string(target.known_hosts()).expect("read")
    );
    std::fs::write(known.path(), both).expect("write");
    let mut via = endpoint(&target);
    via.jump = Some(Box::new(Endpoint {
        name: "bastion".into(),
        ..endpoint(&bastion)
    }));
    // Both servers accept only their own client key; the target's key must
    // be offered to the target through the tunnel.
    let session = Session::connect(&via, &config(known.path()))
        .await
        .unwrap_or_else(|err| panic!("{err}\nbastion log:\n{}", bastion.log()));
    let (out, _) = run(&session, Command::new("echo through")).await;
    assert_eq!(out.expect("runs").stdout.text(), "through\n");
}

fn openssh_fingerprint(sshd: &Sshd) -> String {
    let pubkey: PathBuf = sshd.client_key().with_file_name("host_ed25519.pub");
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pubkey)
        .output()
        .expect("ssh-keygen");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
#[ignore = "fleet tier: run through tests/run"]
async fn sudo_that_wants_a_password_is_reported_as_such() {
    let fleet = nightshift_testbed::Fleet::shared().expect("shared fleet");
    let m = fleet.manifest();
    let host = &fleet.hosts()[0];
    let endpoint = |user: &str| Endpoint {
        name: host.name.clone(),
        address: host.address.to_string(),
        port: host.port,
        user: user.into(),
        identity: Some(m.identity.clone()),
        jump: None,
    };
    let config = config(&m.known_hosts);
    let clerk = Session::connect(&endpoint("clerk"), &config)
        .await
        .expect("clerk connects");
    let (out, _) = run(&clerk, Command::new("id -u").become_root(true)).await;
    let err = out.expect_err("sudo wants a password");
    assert_eq!(err.kind(), "sudo_password", "{err}");
    let admin = Session::connect(&endpoint(&m.user), &config)
        .await
        .expect("admin connects");
    let (out, _) = run(&admin, Command::new("id -u").become_root(true)).await;
    assert_eq!(out.expect("passwordless sudo").stdout.text(), "0\n");
}

/// A throw-away key of another type, authorised on `sshd`.
fn extra_key(sshd: &Sshd, dir: &std::path::Path, kind: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(format!("id_{kind}"));
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", passphrase, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    sshd.authorize(&path.with_extension("pub"))
        .expect("authorize");
    path
}

#[tokio::test]
async fn rsa_and_ecdsa_keys_and_encrypted_ones_authenticate() {
    let sshd = Sshd::start().expect("sshd");
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in ["rsa", "ecdsa"] {
        let mut endpoint = endpoint(&sshd);
        endpoint.identity = Some(extra_key(&sshd, dir.path(), kind, ""));
        let session = Session::connect(&endpoint, &config(&sshd.known_hosts()))
            .await
            .unwrap_or_else(|err| panic!("{kind}: {err}"));
        assert!(
            run(&session, Command::new("true"))
                .await
                .0
                .expect("runs")
                .status
                .success()
        );
    }
    let mut endpoint = endpoint(&sshd);
    endpoint.identity = Some(extra_key(&sshd, dir.path(), "ed25519", "correct horse"));
    let mut config = config(&sshd.known_hosts());
    let err = Session::connect(&endpoint, &config)
        .await
        .expect_err("no passphrase");
    assert!(
        err.to_string().contains("NIGHTSHIFT_SSH_PASSPHRASE"),
        "{err}"
    );
    config.passphrase = Some("wrong".into());
    let err = Session::connect(&endpoint, &config)
        .await
        .expect_err("wrong passphrase");
    assert!(
        !err.to_string().contains("wrong"),
        "the passphrase never shows: {err}"
    );
    config.passphrase = Some("correct horse".into());
    Session::connect(&endpoint, &config)
        .await
        .expect("right passphrase");
}

#[tokio::test]
async fn keys_in_ssh_agent_authenticate() {
    let sshd = Sshd::start().expect("sshd");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = extra_key(&sshd, dir.path(), "ed25519", "");
    let socket = dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    for _ in 0..50 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = std::process::Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .expect("ssh-add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let mut endpoint = endpoint(&sshd);
    endpoint.identity = None;
    let mut config = config(&sshd.known_hosts());
    config.agent = Some(socket);
    let result = Session::connect(&endpoint, &config).await;
    let _ = agent.kill();
    let _ = agent.wait();
    let session = result.expect("agent key accepted");
    assert!(
        run(&session, Command::new("true"))
            .await
            .0
            .expect("runs")
            .status
            .success()
    );
}

/// Writes 8 MiB into a remote `cat >`, reads it back with `cat`, then copies
/// a tree from `tar -c` on `host` into `tar -x` on `target`, as a restore to
/// another host does; sshd shares this machine's files, so the results are
/// checked here.
async fn stream_round_trips(
    host: &nightshift_transport::Host,
    target: &nightshift_transport::Host,
    dir: &std::path::Path,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = dir.join("blob");
    let quoted = nightshift_transport::shell_quote(&file.display().to_string());
    let mut writing = host
        .write_stream(&Command::new(format!("cat > {quoted}")))
        .await
        .expect("write stream");
    writing.write_all(&data).await.expect("write");
    assert!(writing.finish().await.expect("finish").status.success());
    assert_eq!(std::fs::read(&file).expect("written"), data);

    let mut reading = host
        .read_stream(&Command::new(format!("cat {quoted}")))
        .await
        .expect("read stream");
    let mut back = Vec::new();
    reading.read_to_end(&mut back).await.expect("read");
    assert!(reading.finish().await.expect("finish").status.success());
    assert_eq!(back, data);

    let (src, dst) = (dir.join("src"), dir.join("dst"));
    std::fs::create_dir_all(src.join("etc/nginx")).expect("mkdir");
    std::fs::create_dir_all(&dst).expect("mkdir");
    std::fs::write(src.join("etc/nginx/site.conf"), "listen 80;\n").expect("write");
    std::fs::copy(&file, src.join("blob")).expect("copy");
    let q = |p: &std::path::Path| nightshift_transport::shell_quote(&p.display().to_string());
    let mut tar_out = host
        .read_stream(&Command::new(format!("tar -C {} -cf - .", q(&src))))
        .await
        .expect("tar -c");
    let mut tar_in = target
        .write_stream(&Command::new(format!("tar -C {} -xf -", q(&dst))))
        .await
        .expect("tar -x");
    tokio::io::copy(&mut tar_out, &mut tar_in)
        .await
        .expect("copy");
    assert!(
        tar_out
            .finish()
            .await
            .expect("tar -c finish")
            .status
            .success()
    );
    assert!(
        tar_in
            .finish()
            .await
            .expect("tar -x finish")
            .status
            .success()
    );
    let diff = std::process::Command::new("diff")
        .arg("-r")
        .arg(&src)
        .arg(&dst)
        .output()
        .expect("diff");
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );

    let missing = host
        .read_stream(&Command::new("cat /nonexistent/nightshift"))
        .await
        .expect("starts");
    let out = missing.finish().await.expect("finishes");
    assert_eq!(out.status, ExitStatus::Code(1));
    assert!(
        out.stderr.text().contains("No such file"),
        "{}",
        out.stderr.text()
    );
}

#[tokio::test]
async fn streams_round_trip_over_ssh_and_locally() {
    let sshd = Sshd::start().expect("sshd");
    let ssh = nightshift_transport::Host::Ssh(connect(&sshd).await);
    let other = nightshift_transport::Host::Ssh(connect(&sshd).await);
    let dir = tempfile::tempdir().expect("tempdir");
    stream_round_trips(&ssh, &other, dir.path()).await;
    let local = nightshift_transport::Host::Local(nightshift_transport::Local);
    let dir = tempfile::tempdir().expect("tempdir");
    stream_round_trips(&local, &local, dir.path()).await;
}

#[tokio::test]
async fn writing_to_a_command_that_stopped_reading_fails_instead_of_waiting() {
    use tokio::io::AsyncWriteExt;
    let sshd = Sshd::start().expect("sshd");
    let session = connect(&sshd).await;
    let started = Instant::now();
    let mut writing = session
        .write_stream(&Command::new("echo full >&2; exit 3"))
        .await
        .expect("starts");
    let chunk = vec![0u8; 1 << 20];
    let mut failed = None;
    for _ in 0..256 {
        if let Err(err) = writing.write_all(&chunk).await {
            failed = Some(err);
            break;
        }
    }
    let err = failed.expect("a write fails once the command is gone");
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
    let out = writing.finish().await.expect("the outcome");
    assert_eq!(out.status, ExitStatus::Code(3));
    assert_eq!(out.stderr.text(), "full\n");
    assert!(started.elapsed() < Duration::from_secs(10));
}
