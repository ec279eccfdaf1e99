//! Start-up failures and shutdown (issue 3, items 4 and 5): an unreachable database ends in
//! a clear message and exit 1 after bounded retries; SIGTERM/SIGINT end in exit 0 within 30 s.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use scribe_tests::serde_json::json;
use scribe_tests::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A database URL that can't work for `backend`, in `setup`'s temp dir.
fn unreachable_database_url(setup: &TestSetup) -> String {
    match setup.backend {
        Backend::Postgres => format!("postgres://postgres@127.0.0.1:{}/scribe", closed_port()),
        Backend::Sqlite => {
            // A path below a regular file: no directory can be created there.
            let blocker = setup.dir.path().join("not-a-directory");
            std::fs::write(&blocker, "").unwrap();
            format!("sqlite://{}", blocker.join("scribe.db").display())
        }
    }
}

db_test!(
    async fn unreachable_database_fails_cleanly_after_retrying(backend: Backend) {
        let mut setup = TestSetup::new(backend).await;
        let url = unreachable_database_url(&setup);
        setup.merge_config(json!({
            "database_url": url,
            "database": { "connect_timeout_seconds": 2 },
        }));

        for args in [&[][..], &["migrate"][..]] {
            let out = setup.run(args).await;
            out.assert_code(1).assert_no_panic();
            let stderr = out.stderr.to_lowercase();
            assert!(
                stderr.contains("database") || stderr.contains("sqlite"),
                "the message says what failed\n{out}"
            );
            assert!(
                out.elapsed < Duration::from_secs(30),
                "gave up in time\n{out}"
            );
            if backend == Backend::Postgres {
                // It retried for connect_timeout_seconds before giving up.
                assert!(out.elapsed >= Duration::from_millis(1500), "retried\n{out}");
            }
        }
    }
);

db_test!(
    async fn sigterm_stops_an_idle_server_with_exit_0(app: TestApp) {
        app.get_json("/api/about").await;
        let started = Instant::now();
        let status = app.terminate().await;
        assert!(status.success(), "exit {status}\n{}", app.logs().dump());
        assert!(started.elapsed() < SHUTDOWN_TIMEOUT);
        assert!(!app.logs().dump().contains("panicked"));
    }
);

db_test!(
    async fn sigint_stops_the_server_with_exit_0(app: TestApp) {
        app.get_json("/api/about").await;
        let status = app.interrupt().await;
        assert!(status.success(), "exit {status}\n{}", app.logs().dump());
    }
);

db_test!(
    /// A keep-alive connection and a client stuck halfway through its request headers must
    /// not hold the shutdown past 30 s, and the server stops accepting.
    async fn sigterm_with_open_connections_exits_0_in_time(app: TestApp) {
        // A pooled keep-alive connection.
        app.get_json("/api/about").await;
        // A request whose headers never finish.
        let mut stalled = TcpStream::connect(app.address).await.unwrap();
        stalled
            .write_all(b"GET /api/about HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: yes\r\n")
            .await
            .unwrap();
        stalled.flush().await.unwrap();

        let started = Instant::now();
        let status = app.terminate().await;
        assert!(status.success(), "exit {status}\n{}", app.logs().dump());
        assert!(started.elapsed() < SHUTDOWN_TIMEOUT);

        assert!(
            TcpStream::connect(app.address).await.is_err(),
            "still accepting connections after exit"
        );
        drop(stalled);
    }
);

db_test!(
    /// A port already taken is a clear start-up error, not a panic.
    async fn port_in_use_fails_cleanly(backend: Backend) {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let setup = TestSetup::new(backend)
            .await
            .with_config(json!({ "web_server": { "port": port } }));
        let out = setup.run(&["serve"]).await;
        assert!(!out.status.success(), "must fail\n{out}");
        out.assert_no_panic();
        assert!(
            out.stderr.contains(&port.to_string()),
            "names the address\n{out}"
        );
        drop(taken);
    }
);

db_test!(
    /// A response still being sent when SIGTERM arrives is finished, not cut off: a large
    /// static file (`client_path`) read by a slow client keeps a request in flight.
    async fn sigterm_finishes_a_response_in_flight(backend: Backend) {
        use tokio::io::AsyncReadExt;

        const SIZE: usize = 64 << 20; // Far more than the socket buffers hold.
        let setup = TestSetup::new(backend).await;
        let client = setup.dir.path().join("client");
        std::fs::create_dir_all(&client).unwrap();
        std::fs::write(client.join("index.html"), "<!doctype html>").unwrap();
        let content: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        std::fs::write(client.join("big.bin"), &content).unwrap();
        let mut app = setup
            .with_config(json!({ "client_path": client }))
            .spawn()
            .await;

        let mut stream = TcpStream::connect(app.address).await.unwrap();
        stream
            .write_all(b"GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        // Read the start of the response, then stop: the server blocks on a full socket.
        let mut received = vec![0u8; 64 << 10];
        stream.read_exact(&mut received).await.unwrap();
        let head = String::from_utf8_lossy(&received[..256]).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");

        app.server.signal(libc::SIGTERM);
        // Shutdown has begun once new connections are refused.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(app.address).await {
                Err(_) => break,
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Ok(_) => panic!("still accepting 10 s after SIGTERM"),
            }
        }

        stream.read_to_end(&mut received).await.unwrap();
        let split = received
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of headers")
            + 4;
        assert_eq!(received.len() - split, SIZE, "the whole file arrived");
        assert!(received[split..] == content[..], "the file arrived intact");

        let status = app.server.wait_exit(SHUTDOWN_TIMEOUT).await;
        assert!(status.success(), "exit {status}\n{}", app.logs().dump());
    }
);
