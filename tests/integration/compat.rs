//! Components built for `wasmtime serve` run unchanged; streaming both ways; many at once.

use crate::support::{Backend, Server, components, spec};
use serde_json::json;

#[tokio::test]
async fn wstd_component_streams_headers_and_body() {
    let server = Server::start(Backend::Sqlite).await;
    server.deploy_ok("echo", components().bytes("echo"), spec(&["/echo/..."], json!({}))).await;

    // A streamed request body of 2 MiB in uneven chunks comes back byte for byte.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..64u32).map(|i| Ok((0..(16_384 + i * 517)).map(|j| (i.wrapping_mul(31) ^ j) as u8).collect())).collect();
    let expected: Vec<u8> = chunks.iter().flat_map(|c| c.as_ref().unwrap().clone()).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let response = server
        .http
        .post(format!("{}/echo/some/path?q=1&r=two", server.data))
        .header("x-trace", "abc")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-echo-method"], "POST");
    assert_eq!(response.headers()["x-echo-uri"], "/echo/some/path?q=1&r=two");
    assert_eq!(response.headers()["x-echo-x-trace"], "abc");
    let received = response.bytes().await.unwrap();
    assert_eq!(received.len(), expected.len());
    assert!(received == expected, "echoed body differs");
}

#[tokio::test]
async fn raw_wasi_crate_component_runs() {
    let server = Server::start(Backend::Sqlite).await;
    server.deploy_ok("raw", components().bytes("wasi-raw"), spec(&["/raw"], json!({}))).await;
    assert_eq!(server.call("/raw").await, (200, "raw wasi ok".into()));
}

#[tokio::test]
async fn two_hundred_concurrent_requests_are_all_answered_correctly() {
    let server = Server::start(Backend::Sqlite).await;
    server.deploy_ok("hello", components().bytes("hello"), spec(&["/hello/..."], json!({}))).await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (http, data) = (server.http.clone(), server.data.clone());
            tokio::spawn(async move {
                let response = http.get(format!("{data}/hello/user{i}?greeting=Hey")).send().await.unwrap();
                (i, response.status().as_u16(), response.text().await.unwrap())
            })
        })
        .collect();
    for task in tasks {
        let (i, status, body) = task.await.unwrap();
        assert_eq!((status, body), (200, format!("Hey, user{i}!")));
    }
}
