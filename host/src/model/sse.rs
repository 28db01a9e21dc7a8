//! Reading server-sent events off a byte stream (`field: value` lines; an empty line ends an
//! event): `faas logs -f` reads a node's log stream with it, and a node the streams of the
//! others it merges into its own.

/// One event: its `event:` name (none for a plain message) and its `data:` lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Collects bytes as they arrive and hands out the events they complete.
#[derive(Debug, Default)]
pub struct SseReader {
    pending: Vec<u8>,
}

impl SseReader {
    /// Adds `bytes`; returns every event now complete (comments, such as keep-alives, have no
    /// fields and are dropped).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let raw: Vec<u8> = self.pending.drain(..end + 2).collect();
            let raw = String::from_utf8_lossy(&raw);
            let event = raw.lines().find_map(|l| l.strip_prefix("event:")).map(|e| e.trim().to_owned());
            let data: Vec<&str> = raw.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            if event.is_some() || !data.is_empty() {
                events.push(SseEvent { event, data: data.join("\n") });
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let mut reader = SseReader::default();
        assert!(reader.push(b"event: log\ndata: {\"a\"").is_empty());
        let events = reader.push(b":1}\n\n: keep-alive\n\nevent: lagged\ndata: 3\n\ndata: x\n");
        assert_eq!(
            events,
            [
                SseEvent { event: Some("log".into()), data: "{\"a\":1}".into() },
                SseEvent { event: Some("lagged".into()), data: "3".into() },
            ]
        );
        assert_eq!(reader.push(b"data: y\n\n"), [SseEvent { event: None, data: "x\ny".into() }]);
    }
}
