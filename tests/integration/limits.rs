//! Concurrency limits with a bounded queue, and the request-body limit.

use crate::support::{Backend, Server, components, error_of, spec};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn past_the_queue_requests_get_503_with_retry_after() {
    let server = Server::start(Backend::Sqlite).await;
    let limits = json!({"max_concurrency": 1, "max_queue": 1, "timeout_ms": 10_000});
    server.deploy_ok("misbehave", components().bytes("misbehave"), spec(&["/misbehave/..."], limits)).await;

    let sleeper = |ms: u64| {
        let (http, url) = (server.http.clone(), format!("{}/misbehave/sleep?ms={ms}", server.data));
        tokio::spawn(async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    let running = sleeper(1500);
    server.wait_for_metric(r#"faas_active_instances{function="misbehave"} 1"#).await;
    let queued = sleeper(10);
    // Nothing shows a request waiting in the queue, so this one is given time to get there.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // One running, one queued: the third is refused at once.
    let response = server.http.get(format!("{}/misbehave/ok", server.data)).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_of(&body).0, "overloaded");

    assert_eq!(running.await.unwrap(), (200, "slept 1500".into()));
    assert_eq!(queued.await.unwrap(), (200, "slept 10".into()));
    assert_eq!(server.call("/misbehave/ok").await, (200, "ok".into()));
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"faas_invocations_total{function="misbehave",status="503",version="1"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn request_bodies_over_the_limit_get_413() {
    let server = Server::start(Backend::Sqlite).await;
    server.deploy_ok("echo", components().bytes("echo"), spec(&["/echo"], json!({"max_body_bytes": 1024}))).await;
    let url = format!("{}/echo", server.data);

    let response = server.http.post(&url).body(vec![b'a'; 1024]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), 1024);

    // Declared too large: refused before the function runs.
    let response = server.http.post(&url).body(vec![b'a'; 1025]).send().await.unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_of(&body).0, "body_too_large");

    // Streamed without a length: cut off at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..4).map(|_| Ok(vec![b'b'; 512])).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let response = server.http.post(&url).body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let received = response.bytes().await.map(|b| b.len()).unwrap_or(0);
    // The echo may already have started streaming the first KiB back; either way the function
    // never sees more than 1 KiB.
    assert!(status == 413 || (status == 200 && received <= 1024), "{status} {received}");

    // The default limit is 10 MiB.
    server.deploy_ok("echo2", components().bytes("echo"), spec(&["/echo2"], json!({}))).await;
    // Sent by hand: the server answers from the declared length without reading the body, and a
    // client still uploading would see the connection close under it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.data.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!("POST /echo2 HTTP/1.1\r\nhost: {address}\r\ncontent-length: {}\r\n\r\n", (10 << 20) + 1);
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = socket.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
}
