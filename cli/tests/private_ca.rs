//! A private CA (a private endpoint, a TLS-inspecting proxy): trusted through `SSL_CERT_FILE`,
//! read at the first AWS call since the TLS set-up left the cold start, and certificate
//! verification never off (benches/README.md, "Certificates"). The emulator is put behind a
//! TLS front whose certificate a throwaway CA signed (tests/emulator/tls_front.py); the
//! `patchpilot` binary goes through the same `patchpilot::aws::http_client` as the functions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

/// The TLS front; it exits when its stdin closes, i.e. when this is dropped.
struct Front {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    dir: PathBuf,
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_front(upstream: u16) -> Front {
    let root = patchpilot_tests::repo_root();
    let dir = std::env::temp_dir().join(format!("patchpilot-private-ca-{}", std::process::id()));
    let mut child = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/emulator/tls_front.py"))
        .arg("--upstream")
        .arg(upstream.to_string())
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the venv's python starts tests/emulator/tls_front.py (make venv)");
    let stdin = child.stdin.take().expect("a stdin pipe");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("a stdout pipe"))
        .read_line(&mut line)
        .expect("tls_front.py prints its port");
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("tls_front.py printed {line:?}, not a port"));
    Front {
        child,
        _stdin: stdin,
        port,
        dir,
    }
}

/// `patchpilot coverage` (EC2 and SSM reads) against `endpoint`, trusting `ca_file` if given.
fn coverage(endpoint: &str, ca_file: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_patchpilot"));
    command
        .arg("coverage")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", patchpilot_tests::REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("PATCHPILOT_STACK")
        .env_remove("SSL_CERT_DIR")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy");
    match ca_file {
        Some(file) => command.env("SSL_CERT_FILE", file),
        None => command.env_remove("SSL_CERT_FILE"),
    };
    command.output().expect("the patchpilot binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_private_ca_is_trusted_through_ssl_cert_file_and_nothing_else_is() {
    let emu = patchpilot_tests::emulator();
    let front = tls_front(emu.port());
    let https = format!("https://127.0.0.1:{}", front.port);

    // What the same reads answer in plain HTTP, straight from the emulator.
    let plain = coverage(emu.endpoint(), None);
    assert!(plain.status.success(), "{}", text(&plain));

    // The private CA in SSL_CERT_FILE: the same answer, through TLS.
    let trusted = coverage(&https, Some(&front.dir.join("ca.pem")));
    assert!(trusted.status.success(), "{}", text(&trusted));
    assert_eq!(
        String::from_utf8_lossy(&trusted.stdout),
        String::from_utf8_lossy(&plain.stdout)
    );

    // The platform's roots (no SSL_CERT_FILE) do not hold the private CA, a bundle of another
    // CA does not either, and a bundle that is missing holds nothing: each refused, the
    // certificate named as the reason, never a panic. No setting turns verification off.
    for (case, ca) in [
        ("the platform's roots", None),
        ("an unrelated CA", Some(front.dir.join("other-ca.pem"))),
        (
            "a bundle file that is missing",
            Some(front.dir.join("missing.pem")),
        ),
    ] {
        let refused = coverage(&https, ca.as_deref());
        let out = text(&refused);
        assert!(!refused.status.success(), "{case}: accepted\n{out}");
        assert!(
            !out.contains("panicked"),
            "{case}: a panic, not an error:\n{out}"
        );
        eprintln!("{case}:\n{out}");
        assert!(
            out.to_lowercase().contains("certificate") || out.contains("UnknownIssuer"),
            "{case}: refused for another reason than the certificate:\n{out}"
        );
    }
}
