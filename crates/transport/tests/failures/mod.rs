//! Connections that fail or are stopped: a closed port, a silent one, a
//! timeout or a cancel that stops the remote process tree, sshd killed
//! mid-command.

use std::time::{Duration, Instant};

use nightshift_testbed::Sshd;
use nightshift_transport::{Command, Session, Stream, TransportError, Unreachable};

use crate::{config, connect, endpoint, run};

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
