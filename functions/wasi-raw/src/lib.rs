//! `wasi-raw`: a component written against the bare `wasi` crate bindings, with no
//! SDK and no async runtime. Answers `200 raw wasi ok` to any request.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct RawHandler;

impl Guest for RawHandler {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::new();
        headers.append("content-type", b"text/plain").expect("content-type is an allowed header");
        let response = OutgoingResponse::new(headers);
        response.set_status_code(200).expect("200 is a valid status");
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(response_out, Ok(response));

        let stream = body.write().expect("stream is taken once");
        stream.blocking_write_and_flush(b"raw wasi ok").expect("writing the response body");
        // The stream is a child of the body: drop it before finishing the body.
        drop(stream);
        OutgoingBody::finish(body, None).expect("finishing the response body");
    }
}

wasi::http::proxy::export!(RawHandler);
