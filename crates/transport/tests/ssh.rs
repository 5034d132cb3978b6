//! Tier 2: the SSH transport against OpenSSH's own sshd on loopback. Every
//! error kind is provoked for real.

mod auth;
mod failures;
mod host_keys;
mod streams;

use std::time::Duration;

use nightshift_testbed::Sshd;
use nightshift_transport::{
    Command, Endpoint, ExitStatus, KnownHosts, Session, SshConfig, Stream, TransportError,
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
