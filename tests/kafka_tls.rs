//! Kafka over TLS as MSK's TLS listener speaks it, with a client certificate (mutual TLS), and
//! SASL/SCRAM over TLS as its SCRAM listener does: a real TLS terminator (stunnel) in front of
//! a `tickflow broker` that advertises the TLS port (and, for SCRAM, requires a user),
//! certificates made by the `openssl` command, and `tickflow simulate` and `tail` as a user
//! runs them. The client key's password and the SASL password come from files; at `trace` no
//! log line holds them. MSK's IAM mode (SASL/OAUTHBEARER) has no server here: its token
//! provider is unit-tested (`kafka::auth`). The schema registry is reached over HTTPS too
//! (stunnel in front of `tickflow registry`), trusting the test CA through `SSL_CERT_FILE`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A password that must never appear in any output.
const MARKER: &str = "MARKER-pw-5b1e0c";

/// Kills the child when dropped, also when an assertion fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is needed to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate whose key is encrypted
/// with [`MARKER`].
fn make_pki(dir: &Path) {
    let days = ["-days", "2"];
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=tickflow-test-ca",
            days[0],
            days[1],
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-extfile",
            "san.ext",
            days[0],
            days[1],
        ],
    );
    let pass = format!("pass:{MARKER}");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "client.key",
            "-passout",
            &pass,
            "-out",
            "client.csr",
            "-subj",
            "/CN=tickflow-client",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            days[0],
            days[1],
        ],
    );
    std::fs::write(dir.join("key-password"), format!("{MARKER}\n")).unwrap();
}

fn stunnel_binary() -> &'static str {
    for name in ["stunnel4", "stunnel"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name;
        }
    }
    panic!("stunnel is needed (apt-get install stunnel4; scripts/test.sh installs it)");
}

/// stunnel accepting TLS on `tls_port` and forwarding to the broker on `broker_port`;
/// with `client_cert`, only from clients with a certificate signed by the test CA.
fn start_stunnel(dir: &Path, tls_port: u16, broker_port: u16, client_cert: bool) -> Running {
    stunnel(dir, "kafka", tls_port, broker_port, client_cert)
}

/// stunnel service `name` accepting TLS on `tls_port` (the test CA's server certificate for
/// 127.0.0.1) and forwarding to `port`; its log is `stunnel-<name>.log`.
fn stunnel(dir: &Path, name: &str, tls_port: u16, port: u16, client_cert: bool) -> Running {
    let verify = if client_cert {
        "verifyChain = yes\nrequireCert = yes\n"
    } else {
        ""
    };
    let conf = format!(
        "foreground = yes\npid =\noutput = {log}\n[{name}]\naccept = 127.0.0.1:{tls_port}\n\
         connect = 127.0.0.1:{port}\ncert = {d}/server.pem\nkey = {d}/server.key\n\
         CAfile = {d}/ca.pem\n{verify}",
        d = dir.display(),
        log = dir.join(format!("stunnel-{name}.log")).display(),
    );
    let path = dir.join(format!("stunnel-{name}.conf"));
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(stunnel_binary())
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

/// `tickflow broker` on `port`, advertising the TLS port, with `storage` flags
/// (`--memory`, or `--data-dir` and more).
fn start_broker(port: u16, advertised: u16, storage: &[&str]) -> Running {
    let advertise = format!("127.0.0.1:{advertised}");
    let child = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args([
            "broker",
            "--port",
            &port.to_string(),
            "--advertise",
            &advertise,
        ])
        .args(storage)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

fn tickflow(dir: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickflow"));
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("TICKFLOW_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The environment of a client that reaches the broker through TLS on `tls_port`.
fn tls_env(dir: &Path, tls_port: u16, registry: &str, client_cert: bool) -> Vec<(String, String)> {
    let p = |k: &str| format!("TICKFLOW_KAFKA__PROPERTIES__{k}");
    let file = |f: &str| dir.join(f).display().to_string();
    let mut env = vec![
        (
            "TICKFLOW_KAFKA__BOOTSTRAP_SERVERS".into(),
            format!("127.0.0.1:{tls_port}"),
        ),
        ("TICKFLOW_KAFKA__CONNECT_TIMEOUT".into(), "8s".into()),
        ("TICKFLOW_REGISTRY__URL".into(), registry.to_string()),
        ("TICKFLOW_LOG".into(), "trace".into()),
        (p("SECURITY.PROTOCOL"), "SSL".into()),
        (p("SSL.CA.LOCATION"), file("ca.pem")),
        (p("DEBUG"), "security,broker,conf".into()),
    ];
    if client_cert {
        env.push((p("SSL.CERTIFICATE.LOCATION"), file("client.pem")));
        env.push((p("SSL.KEY.LOCATION"), file("client.key")));
        env.push((p("SSL.KEY.PASSWORD_FILE"), file("key-password")));
    }
    env
}

fn registry(dir: &Path) -> (Running, String) {
    let port = crate::common::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["registry", "--port", &port.to_string(), "--dir"])
        .arg(dir.join("registry"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port, "the registry");
    (Running(child), format!("http://127.0.0.1:{port}"))
}

/// The registry behind TLS (stunnel, the test CA's certificate): `https://127.0.0.1:<port>`.
fn registry_over_tls(dir: &Path) -> (Running, Running, String) {
    let (registry, url) = registry(dir);
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let tls_port = crate::common::free_port();
    let proxy = stunnel(dir, "registry", tls_port, port, false);
    wait_port(tls_port, "stunnel for the registry");
    (registry, proxy, format!("https://127.0.0.1:{tls_port}"))
}

/// Kafka over mutual TLS, and the schema registry over HTTPS trusting the test CA through
/// `SSL_CERT_FILE` (the registry client's rustls reads the system's roots, and that
/// variable, as OpenSSL does).
#[test]
fn simulate_and_tail_over_mutual_tls_without_leaking_the_key_password() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().to_path_buf();
    make_pki(&dir);
    let (broker_port, tls_port) = (crate::common::free_port(), crate::common::free_port());
    let _broker = start_broker(broker_port, tls_port, &["--memory"]);
    wait_port(broker_port, "the broker");
    let _stunnel = start_stunnel(&dir, tls_port, broker_port, true);
    wait_port(tls_port, "stunnel");
    let (_registry, _registry_tls, registry_url) = registry_over_tls(&dir);
    let trust_test_ca = |mut env: Vec<(String, String)>| {
        let ca = dir.join("ca.pem").display().to_string();
        env.push(("SSL_CERT_FILE".into(), ca));
        env
    };
    let env = trust_test_ca(tls_env(&dir, tls_port, &registry_url, true));
    simulate_and_tail(&dir, &env, "the key password");

    // A registry whose certificate is not trusted is refused (the system's roots only).
    let mut untrusted = tls_env(&dir, tls_port, &registry_url, true);
    untrusted.push((
        "SSL_CERT_FILE".into(),
        "/etc/ssl/certs/ca-certificates.crt".into(),
    ));
    untrusted.push(("TICKFLOW_REGISTRY__RETRY_FOR".into(), "1s".into()));
    let refused = tickflow(
        &dir,
        &["simulate", "--count", "1", "--topic", "tls.ticks"],
        &untrusted,
    );
    let out = text(&refused);
    assert!(
        !refused.status.success(),
        "an untrusted registry was used: {out}"
    );
    assert!(out.contains(&registry_url), "{out}");

    // Without a client certificate the TLS listener refuses the client, and tickflow says so
    // within its connect timeout instead of hanging.
    let started = Instant::now();
    let refused = tickflow(
        &dir,
        &["simulate", "--count", "1", "--topic", "tls.ticks"],
        &trust_test_ca(tls_env(&dir, tls_port, &registry_url, false)),
    );
    let out = text(&refused);
    assert!(
        !refused.status.success(),
        "a client without a certificate got in: {out}"
    );
    assert!(out.contains("cannot reach Kafka"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// `tickflow simulate` replays one index row (4 ticks) into `tls.ticks` and `tickflow tail`
/// reads them back, both with `env` and logging at `trace`; neither output holds [`MARKER`]
/// (`secret` names what it stands for).
fn simulate_and_tail(dir: &Path, env: &[(String, String)], secret: &str) {
    std::fs::write(
        dir.join("idx.csv"),
        "Index,Date,Open,High,Low,Close,Adj Close,Volume,CloseUSD\n\
         HSI,1986-12-31,2568.3,2570,2560,2565,2565,1000,330.0\n",
    )
    .unwrap();
    let produced = tickflow(
        dir,
        &[
            "simulate",
            "--replay",
            "idx.csv",
            "--topic",
            "tls.ticks",
            "--partitions",
            "1",
        ],
        env,
    );
    let out = text(&produced);
    assert!(
        produced.status.success(),
        "{out}\nstunnel: {}",
        std::fs::read_to_string(dir.join("stunnel-kafka.log")).unwrap_or_default()
    );
    assert!(out.contains("produced 4 ticks to "), "{out}");
    assert!(!out.contains(MARKER), "{secret} is in simulate's output");
    assert!(
        out.contains("TRACE") || out.contains("DEBUG"),
        "no verbose log was written: {out}"
    );

    let tailed = tickflow(
        dir,
        &["tail", "--topic", "tls.ticks", "-n", "4", "--idle", "30s"],
        env,
    );
    let out = text(&tailed);
    assert!(tailed.status.success(), "{out}");
    assert!(!out.contains(MARKER), "{secret} is in tail's output");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&tailed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let volume: i64 = lines
        .iter()
        .map(|l| l["value"]["size"].as_i64().unwrap())
        .sum();
    assert_eq!(volume, 1000);
}

/// SASL/SCRAM-SHA-512 over TLS, as MSK's SCRAM listener (port 9096) speaks it: the broker
/// requires the SCRAM user, stunnel terminates TLS, and the client's password comes from a
/// file. The right password produces and consumes; a wrong one is refused within the connect
/// timeout, as an authentication failure (exit code 2); no output, at `trace`, holds either
/// password.
#[test]
fn simulate_and_tail_over_sasl_scram_and_tls_without_leaking_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().to_path_buf();
    make_pki(&dir);
    std::fs::write(dir.join("scram-password"), format!("{MARKER}\n")).unwrap();
    let (broker_port, tls_port) = (crate::common::free_port(), crate::common::free_port());
    let data = dir.join("broker").display().to_string();
    let password = dir.join("scram-password").display().to_string();
    let storage = [
        "--data-dir",
        data.as_str(),
        "--scram-user",
        "tickflow",
        "--scram-password-file",
        password.as_str(),
    ];
    let _broker = start_broker(broker_port, tls_port, &storage);
    wait_port(broker_port, "the broker");
    let _stunnel = start_stunnel(&dir, tls_port, broker_port, false);
    wait_port(tls_port, "stunnel");
    let (_registry, registry_url) = registry(&dir);
    let scram_env = |password_file: &str| {
        let p = |k: &str| format!("TICKFLOW_KAFKA__PROPERTIES__{k}");
        let mut env = tls_env(&dir, tls_port, &registry_url, false);
        env.retain(|(k, _)| *k != p("SECURITY.PROTOCOL"));
        env.extend([
            (p("SECURITY.PROTOCOL"), "SASL_SSL".to_string()),
            (p("SASL.MECHANISM"), "SCRAM-SHA-512".to_string()),
            (p("SASL.USERNAME"), "tickflow".to_string()),
            (
                p("SASL.PASSWORD_FILE"),
                dir.join(password_file).display().to_string(),
            ),
        ]);
        env
    };
    simulate_and_tail(&dir, &scram_env("scram-password"), "the SASL password");

    // A wrong password is refused: the broker checks it.
    let wrong = format!("{MARKER}-wrong");
    std::fs::write(dir.join("wrong-password"), &wrong).unwrap();
    let started = Instant::now();
    let refused = tickflow(
        &dir,
        &["simulate", "--count", "1", "--topic", "tls.ticks"],
        &scram_env("wrong-password"),
    );
    let out = text(&refused);
    assert!(
        !refused.status.success(),
        "a wrong SCRAM password got in: {out}"
    );
    // Said as what it is, and the user's to fix: not an unreachable broker.
    assert!(out.contains("refused the client's authentication"), "{out}");
    assert_eq!(refused.status.code(), Some(2), "{out}");
    assert!(!out.contains(MARKER), "a password is in the refusal: {out}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
