//! A scripted HTTPS server (python3 + a throw-away openssl CA) for answers a real OpenBao will
//! not give on demand: redirects, oversize or non-JSON bodies, 401, 429, 5xx, slow answers.
//!
//! The answer is chosen by the path: any segment `r3xx` redirects, else the last segment
//! (`.../s429`, `.../big`, ...) picks it; every request
//! is logged as `METHOD PATH token=<0|1> namespace=<value or ->`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

const SERVER_PY: &str = r#"
import http.server, json, ssl, sys, threading, time

cert, key, log_path = sys.argv[1], sys.argv[2], sys.argv[3]
log_lock = threading.Lock()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self):
        ns = self.headers.get("X-Vault-Namespace") or "-"
        tok = "1" if self.headers.get("X-Vault-Token") else "0"
        with log_lock, open(log_path, "a") as log:
            log.write(f"{self.command} {self.path} token={tok} namespace={ns}\n")

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.record()
        last = self.path.rstrip("/").rsplit("/", 1)[-1]
        redirect = next((seg for seg in self.path.split("/") if seg.startswith("r3")), None)
        if redirect:
            self.reply(int(redirect[1:]), b"", [("Location", "/v1/followed")])
        elif self.path == "/v1/sys/health":
            self.reply(200, json.dumps({"initialized": True, "sealed": False, "standby": False,
                                        "version": "mock"}).encode())
        elif self.path == "/v1/auth/token/lookup-self":
            self.reply(200, json.dumps({"data": {"ttl": 0, "renewable": False}}).encode())
        elif self.path.endswith("/login"):
            self.reply(200, json.dumps({"auth": {"client_token": "s.mocktoken",
                                                 "lease_duration": 3600,
                                                 "renewable": True}}).encode())
        elif last == "s429":
            self.reply(429, b'{"errors":["rate limit quota exceeded"]}', [("Retry-After", "7")])
        elif last == "s500sealed":
            self.reply(500, b'{"errors":["Vault is sealed"]}')
        elif last.startswith("s") and last[1:].isdigit():
            self.reply(int(last[1:]), b'{"errors":["mock"]}')
        elif last == "big":
            self.reply(200, b'{"data":{"pad":"' + b"x" * (2 * 1024 * 1024) + b'"}}')
        elif last == "garbage":
            self.reply(200, b"<html>not json</html>")
        elif last == "slow":
            time.sleep(3)
            self.reply(200, b"{}")
        else:
            self.reply(404, b'{"errors":[]}')

    do_GET = handle_any
    do_POST = handle_any
    do_PUT = handle_any

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The running mock; dropping it kills the python process.
pub(crate) struct MockServer {
    dir: tempfile::TempDir,
    child: Child,
    _stdout: BufReader<ChildStdout>,
    port: u16,
}

impl MockServer {
    pub(crate) fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bao-kms-mock-")
            .tempdir()
            .unwrap();
        make_certificates(dir.path());
        let script = dir.path().join("server.py");
        std::fs::write(&script, SERVER_PY).unwrap();
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.path().join("server.pem"))
            .arg(dir.path().join("server.key"))
            .arg(dir.path().join("requests.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("mock server did not print its port");
        });
        Self {
            dir,
            child,
            _stdout: stdout,
            port,
        }
    }

    pub(crate) fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The CA that signed the mock's certificate (SAN `localhost`, `127.0.0.1`).
    pub(crate) fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("ca.pem")).unwrap()
    }

    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Requests received so far, one line each.
    pub(crate) fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throw-away CA and a server certificate for `localhost` / `127.0.0.1`.
pub(crate) fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl {args:?} failed");
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=bao-kms-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
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
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}
