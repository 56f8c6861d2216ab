//! `eddy devnet` as a user runs it: the real binary, a plain HTTP/1.1 request with the cookie
//! (what curl sends), mining over RPC, kill -9 and restart on the same data dir (the chain
//! survives), and a clean stop on SIGTERM that removes the cookie.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

fn eddy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
}

/// Kills the child if the test fails half-way, so no devnet outlives the test.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `eddy devnet` and returns the child and its RPC address.
fn start(datadir: &std::path::Path, extra: &[&str]) -> (Guard, String) {
    let mut child = eddy()
        .args(["devnet", "--rpc-port", "0", "--datadir"])
        .arg(datadir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn eddy devnet");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("devnet printed its address").expect("line");
        if let Some(a) = line.strip_prefix("rpc: ") {
            break a.to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Guard(child), addr)
}

/// One JSON-RPC call as curl makes it: HTTP/1.1 POST with basic auth from the cookie.
fn curl(addr: &str, cookie: &str, method: &str, params: &str) -> Value {
    let body = format!(r#"{{"jsonrpc":"1.0","id":"curl","method":"{method}","params":{params}}}"#);
    let auth = base64_encode(cookie.trim().as_bytes());
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, json) = resp.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(json.trim()).expect("json body")
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn devnet_serves_curl_survives_kill_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, addr) = start(dir.path(), &["--initial-blocks", "101"]);
    let cookie_path = dir.path().join(".cookie");
    let cookie = std::fs::read_to_string(&cookie_path).expect("cookie written");
    let info = curl(&addr, &cookie, "getblockchaininfo", "[]");
    assert_eq!(info["result"]["chain"], "regtest");
    assert_eq!(info["result"]["blocks"], 101);
    let addr_str = "bcrt1qft5p2uhsdcdc3l2ua4ap5qqfg4pjaqlp250x7us7a8qqhrxrxfsqseac85";
    let mined = curl(&addr, &cookie, "generatetoaddress", &format!(r#"[4, "{addr_str}"]"#));
    assert_eq!(mined["result"].as_array().map(Vec::len), Some(4));
    let best = curl(&addr, &cookie, "getbestblockhash", "[]")["result"].clone();

    // kill -9: the kernel's block files and chainstate bring the same chain back.
    child.0.kill().expect("kill");
    child.0.wait().expect("wait");
    let (mut child, addr) = start(dir.path(), &["--initial-blocks", "101"]);
    let cookie = std::fs::read_to_string(&cookie_path).expect("new cookie");
    let info = curl(&addr, &cookie, "getblockchaininfo", "[]");
    assert_eq!(info["result"]["blocks"], 105, "no blocks lost, none re-mined");
    assert_eq!(info["result"]["bestblockhash"], best);

    // SIGTERM: clean exit, cookie removed.
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = child.0.wait().expect("wait");
    assert!(exit.success(), "{exit:?}");
    assert!(!cookie_path.exists());
}
