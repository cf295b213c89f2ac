//! Incremental Server-Sent Events parser for upstream response bodies
//! (lives at `src/upstream/sse.rs`). Pure: bytes in, frames out; it never
//! does I/O, so the HTTP client feeds it whatever chunks the network gives.
//!
//! Follows the WHATWG event-stream rules: lines end with `\n`, `\r\n` or
//! `\r` (split anywhere, even between `\r` and `\n`); `data:` lines are
//! joined with `\n`; one leading space after the colon is dropped; `:`
//! lines are comments; `id:`/`retry:` and unknown fields are ignored; a
//! frame is dispatched on a blank line, and only if it had a `data` line; a
//! leading BOM is skipped. Bytes are decoded per complete line, so a UTF-8
//! character split across pushes is intact (invalid UTF-8 becomes U+FFFD).
//! A frame larger than [`SseParser::max_frame`] (16 MiB by default) is an
//! error, so a hostile upstream cannot grow our memory without bound.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseFrame {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("SSE frame exceeds {limit} bytes")]
    FrameTooLarge { limit: usize },
}

/// Default frame size limit: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the line being read.
    line: Vec<u8>,
    /// The previous push ended with `\r`: a leading `\n` belongs to it.
    after_cr: bool,
    /// No line completed yet (for the BOM).
    first_line: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    max_frame: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    pub fn new() -> Self {
        Self::with_max_frame(DEFAULT_MAX_FRAME)
    }

    /// A parser that rejects frames over `max_frame` bytes.
    pub fn with_max_frame(max_frame: usize) -> Self {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            event: None,
            data: String::new(),
            has_data: false,
            max_frame,
        }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Feeds bytes; returns the frames they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseFrame>, SseError> {
        let mut frames = Vec::new();
        let mut rest = bytes;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..pos]);
            self.check_size()?;
            if rest[pos] == b'\r' {
                match rest.get(pos + 1) {
                    Some(b'\n') => rest = &rest[pos + 2..],
                    Some(_) => rest = &rest[pos + 1..],
                    None => {
                        self.after_cr = true;
                        rest = &[];
                    }
                }
            } else {
                rest = &rest[pos + 1..];
            }
            let line = std::mem::take(&mut self.line);
            if let Some(frame) = self.process_line(&line) {
                frames.push(frame);
            }
        }
        self.line.extend_from_slice(rest);
        self.check_size()?;
        Ok(frames)
    }

    /// Flushes a last frame that was not followed by a blank line.
    pub fn finish(&mut self) -> Vec<SseFrame> {
        let mut frames = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            if let Some(frame) = self.process_line(&line) {
                frames.push(frame);
            }
        }
        if let Some(frame) = self.dispatch() {
            frames.push(frame);
        }
        self.after_cr = false;
        frames
    }

    fn check_size(&mut self) -> Result<(), SseError> {
        let size = self.line.len() + self.data.len() + self.event.as_ref().map_or(0, String::len);
        if size > self.max_frame {
            self.line.clear();
            self.data.clear();
            self.event = None;
            self.has_data = false;
            return Err(SseError::FrameTooLarge {
                limit: self.max_frame,
            });
        }
        Ok(())
    }

    fn process_line(&mut self, raw: &[u8]) -> Option<SseFrame> {
        let decoded = String::from_utf8_lossy(raw);
        let mut line: &str = &decoded;
        if std::mem::take(&mut self.first_line) {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseFrame> {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseFrame {
            event,
            data: std::mem::take(&mut self.data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::stream::{Event, StreamContext, StreamConverter};
    use proptest::prelude::*;

    fn frame(event: Option<&str>, data: &str) -> SseFrame {
        SseFrame {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseFrame> {
        let mut parser = SseParser::new();
        let mut frames = Vec::new();
        for chunk in chunks {
            match parser.push(chunk) {
                Ok(f) => frames.extend(f),
                Err(e) => panic!("{e}"),
            }
        }
        frames.extend(parser.finish());
        frames
    }

    #[test]
    fn basic_frames_comments_and_fields() {
        let input =
            b": keep-alive\nevent: message\ndata: {\"a\":1}\nid: 7\nretry: 10\n\ndata:no-space\n\n";
        assert_eq!(
            parse_all(&[input]),
            [frame(Some("message"), "{\"a\":1}"), frame(None, "no-space")]
        );
    }

    #[test]
    fn multi_line_data_joined_with_newline() {
        assert_eq!(
            parse_all(&[b"data: one\ndata: two\ndata\n\n"]),
            [frame(None, "one\ntwo\n")]
        );
    }

    #[test]
    fn all_line_endings_and_cr_lf_split_across_pushes() {
        let expected = [frame(None, "a"), frame(None, "b"), frame(None, "c")];
        assert_eq!(
            parse_all(&[b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"]),
            expected
        );
        assert_eq!(
            parse_all(&[
                b"data: a\r",
                b"\n\r",
                b"\ndata: b\r",
                b"\r",
                b"data: c\n",
                b"\n"
            ]),
            expected
        );
    }

    #[test]
    fn cr_lf_split_inside_a_multi_line_frame_is_one_line_end() {
        assert_eq!(
            parse_all(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]),
            [frame(None, "a\nb")]
        );
    }

    #[test]
    fn empty_frames_and_event_only_frames_are_not_dispatched() {
        assert_eq!(
            parse_all(&[b"\n\n\nevent: x\n\ndata: y\n\n"]),
            [frame(None, "y")]
        );
    }

    #[test]
    fn utf8_split_across_pushes() {
        let bytes = "data: héllo 🌍\n\n".as_bytes();
        let split: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_all(&split), [frame(None, "héllo 🌍")]);
    }

    #[test]
    fn bom_is_skipped_and_finish_flushes_unterminated_frame() {
        assert_eq!(
            parse_all(&[b"\xEF\xBB\xBFdata: first\n\ndata: [DONE]"]),
            [frame(None, "first"), frame(None, "[DONE]")]
        );
    }

    #[test]
    fn oversized_frame_is_an_error() {
        let mut parser = SseParser::with_max_frame(16);
        assert_eq!(parser.push(b"data: 0123456789\n"), Ok(vec![]));
        assert_eq!(
            parser.push(b"data: 0123456789\n"),
            Err(SseError::FrameTooLarge { limit: 16 })
        );
        // Also for one long line that never ends.
        let mut parser = SseParser::with_max_frame(16);
        assert!(parser.push(&[b'x'; 17]).is_err());
        assert_eq!(SseParser::new().max_frame(), 16 * 1024 * 1024);
    }

    const FIXTURE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/protocol/fixtures/openai_stream_text_tools.sse"
    ));

    /// Runs raw SSE bytes, split at `cuts`, through parser and converter.
    fn pipeline(bytes: &[u8], cuts: &[usize]) -> Vec<Event> {
        let ctx = StreamContext {
            model: "claude-sonnet-4".into(),
            id_seed: Some(3),
            ..StreamContext::default()
        };
        let mut conv = StreamConverter::new(ctx);
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let mut start = 0;
        let mut feed = |frames: Vec<SseFrame>, events: &mut Vec<Event>| {
            for f in frames {
                events.extend(conv.push(&f.data).unwrap_or_default());
            }
        };
        for &cut in cuts.iter().chain([bytes.len()].iter()) {
            let cut = cut.clamp(start, bytes.len());
            feed(
                parser.push(&bytes[start..cut]).unwrap_or_default(),
                &mut events,
            );
            start = cut;
        }
        feed(parser.finish(), &mut events);
        events.extend(conv.finish());
        events
    }

    #[test]
    fn fixture_pipeline_reaches_message_stop() {
        let events = pipeline(FIXTURE.as_bytes(), &[]);
        assert!(events.len() > 10);
        assert_eq!(events.last().map(|e| e.name), Some("message_stop"));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(mut cuts in prop::collection::vec(0..FIXTURE.len(), 0..40)) {
            cuts.sort_unstable();
            let whole = pipeline(FIXTURE.as_bytes(), &[]);
            prop_assert_eq!(pipeline(FIXTURE.as_bytes(), &cuts), whole);
        }

        #[test]
        fn any_split_with_crlf_gives_the_same_frames(mut cuts in prop::collection::vec(0..FIXTURE.len() * 2, 0..40)) {
            cuts.sort_unstable();
            let crlf = FIXTURE.replace('\n', "\r\n");
            let bytes = crlf.as_bytes();
            let whole = parse_all(&[FIXTURE.as_bytes()]);
            let mut parser = SseParser::new();
            let mut frames = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                let cut = cut.clamp(start, bytes.len());
                frames.extend(parser.push(&bytes[start..cut]).unwrap_or_default());
                start = cut;
            }
            frames.extend(parser.finish());
            prop_assert_eq!(frames, whole);
        }
    }
}
