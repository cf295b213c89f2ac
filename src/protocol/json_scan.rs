//! Incremental recognition of one complete JSON value, fed a fragment at a
//! time. Pure; never does I/O.
//!
//! The stream converter must keep a tool block open until that call's
//! arguments form a complete JSON value. Re-parsing the whole argument string
//! after every fragment costs O(n²) over a call; [`JsonScan`] instead keeps
//! the state of a JSON pushdown automaton between fragments, so each byte is
//! looked at once and [`JsonScan::is_complete`] is O(1).
//!
//! The grammar is exactly what `serde_json` accepts for a whole document
//! (RFC 8259: one value, surrounded by optional space, tab, CR or LF; no
//! nesting limit, `\u` escapes are not checked for surrogate pairs), so the
//! verdict equals `serde_json::from_str::<IgnoredAny>(all fragments)`
//! being `Ok` (a property test checks that). Memory: one byte per open
//! container.

/// Containers opened and not yet closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Array,
    Object,
}

/// Where in a number the scanner is (RFC 8259 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    Minus,
    Zero,
    Int,
    Dot,
    Fraction,
    Exponent,
    ExponentSign,
    ExponentDigits,
}

impl Number {
    /// Whether the number may end here.
    fn can_end(self) -> bool {
        matches!(
            self,
            Number::Zero | Number::Int | Number::Fraction | Number::ExponentDigits
        )
    }

    /// The state after `byte`, or `None` when `byte` is not part of the number.
    fn next(self, byte: u8) -> Option<Number> {
        Some(match (self, byte) {
            (Number::Minus, b'0') => Number::Zero,
            (Number::Minus, b'1'..=b'9') => Number::Int,
            (Number::Int, b'0'..=b'9') => Number::Int,
            (Number::Zero | Number::Int, b'.') => Number::Dot,
            (Number::Dot | Number::Fraction, b'0'..=b'9') => Number::Fraction,
            (Number::Zero | Number::Int | Number::Fraction, b'e' | b'E') => Number::Exponent,
            (Number::Exponent, b'+' | b'-') => Number::ExponentSign,
            (Number::Exponent | Number::ExponentSign | Number::ExponentDigits, b'0'..=b'9') => {
                Number::ExponentDigits
            }
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value must follow (document start, after `[`, `,` or `:`);
    /// `close` allows `]` (right after `[`).
    Value {
        close: bool,
    },
    /// A key must follow (after `{` or a `,` inside an object); `close`
    /// allows `}` (right after `{`).
    Key {
        close: bool,
    },
    Colon,
    /// A value just ended: `,`, the closer, or only space at the top level.
    After,
    String {
        key: bool,
    },
    Escape {
        key: bool,
    },
    Unicode {
        key: bool,
        left: u8,
    },
    Number(Number),
    /// The rest of `true`, `false` or `null`.
    Literal(&'static [u8]),
    /// No continuation can make the text valid.
    Invalid,
}

/// The scanner; see the module doc.
#[derive(Debug, Clone)]
pub struct JsonScan {
    state: State,
    open: Vec<Container>,
}

impl Default for JsonScan {
    fn default() -> Self {
        JsonScan {
            state: State::Value { close: false },
            open: Vec::new(),
        }
    }
}

impl JsonScan {
    /// Whether everything fed so far is exactly one JSON value (plus space).
    pub fn is_complete(&self) -> bool {
        self.open.is_empty()
            && match self.state {
                State::After => true,
                State::Number(number) => number.can_end(),
                _ => false,
            }
    }

    /// Feeds the next fragment.
    pub fn feed(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Invalid {
                return;
            }
            if let State::String { .. } = self.state {
                // Skip plain string content in one go.
                let plain = bytes[i..]
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                    .unwrap_or(bytes.len() - i);
                i += plain;
                if i == bytes.len() {
                    return;
                }
            }
            if self.step(bytes[i]) {
                i += 1;
            }
        }
    }

    /// Advances over one byte; `false` when the byte must be looked at
    /// again in the new state (it ended a number).
    fn step(&mut self, byte: u8) -> bool {
        let space = matches!(byte, b' ' | b'\t' | b'\n' | b'\r');
        self.state = match self.state {
            State::Invalid => State::Invalid,
            State::Value { .. } | State::Key { .. } | State::Colon | State::After if space => {
                self.state
            }
            State::Value { close } => match byte {
                b']' if close => self.close(),
                b'{' => {
                    self.open.push(Container::Object);
                    State::Key { close: true }
                }
                b'[' => {
                    self.open.push(Container::Array);
                    State::Value { close: true }
                }
                b'"' => State::String { key: false },
                b'-' => State::Number(Number::Minus),
                b'0' => State::Number(Number::Zero),
                b'1'..=b'9' => State::Number(Number::Int),
                b't' => State::Literal(b"rue"),
                b'f' => State::Literal(b"alse"),
                b'n' => State::Literal(b"ull"),
                _ => State::Invalid,
            },
            State::Key { close } => match byte {
                b'}' if close => self.close(),
                b'"' => State::String { key: true },
                _ => State::Invalid,
            },
            State::Colon => match byte {
                b':' => State::Value { close: false },
                _ => State::Invalid,
            },
            State::After => match (byte, self.open.last()) {
                (b',', Some(Container::Array)) => State::Value { close: false },
                (b',', Some(Container::Object)) => State::Key { close: false },
                (b']', Some(Container::Array)) => self.close(),
                (b'}', Some(Container::Object)) => self.close(),
                _ => State::Invalid,
            },
            State::String { key } => match byte {
                b'"' if key => State::Colon,
                b'"' => State::After,
                b'\\' => State::Escape { key },
                0..0x20 => State::Invalid,
                _ => State::String { key },
            },
            State::Escape { key } => match byte {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => State::String { key },
                b'u' => State::Unicode { key, left: 4 },
                _ => State::Invalid,
            },
            State::Unicode { key, left } if byte.is_ascii_hexdigit() => match left {
                1 => State::String { key },
                _ => State::Unicode {
                    key,
                    left: left - 1,
                },
            },
            State::Unicode { .. } => State::Invalid,
            State::Number(number) => match number.next(byte) {
                Some(next) => State::Number(next),
                None if number.can_end() => {
                    self.state = State::After;
                    return false;
                }
                None => State::Invalid,
            },
            State::Literal(rest) => match rest.split_first() {
                Some((&expected, [])) if byte == expected => State::After,
                Some((&expected, more)) if byte == expected => State::Literal(more),
                _ => State::Invalid,
            },
        };
        true
    }

    /// Closes the innermost container (the caller checked its kind).
    fn close(&mut self) -> State {
        self.open.pop();
        State::After
    }
}

/// Splits `text` at the given points (those on char boundaries), for
/// property tests that feed a text in arbitrary fragments.
#[cfg(test)]
pub(crate) fn split_at_points<'t>(text: &'t str, cuts: &[proptest::sample::Index]) -> Vec<&'t str> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| c.index(text.len() + 1))
        .filter(|&p| text.is_char_boundary(p))
        .collect();
    points.push(text.len());
    points.sort_unstable();
    let mut from = 0;
    points
        .into_iter()
        .map(|to| {
            let piece = &text[from..to];
            from = to;
            piece
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(fragments: &[&str]) -> bool {
        let mut scan = JsonScan::default();
        for fragment in fragments {
            scan.feed(fragment);
        }
        scan.is_complete()
    }

    fn serde_says(text: &str) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    }

    #[test]
    fn verdicts_match_serde_on_a_table() {
        let cases = [
            "",
            " ",
            "{",
            "{}",
            " {} \n",
            "{}x",
            "{} {}",
            "[",
            "[]",
            "[,]",
            "[1,]",
            "[1 2]",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1",
            "{\"a\":1}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "\"x",
            "\"x\"",
            "\"\\",
            "\"\\q\"",
            "\"\\u12\"",
            "\"\\u12ab\"",
            "\"\u{1}\"",
            "\"é\"",
            "é",
            "0",
            "-",
            "-0",
            "01",
            "1.",
            "1.5",
            ".5",
            "1e",
            "1e+",
            "1e+5",
            "1E5",
            "-1.5e-3",
            "+1",
            "t",
            "tru",
            "true",
            "truex",
            "nul",
            "null",
            "false",
            "[true,false,null]",
            "[[[]]]",
            "[[[]]",
            "[}",
            "{]",
            "{\"a\":[1,{\"b\":\"c\"}]}",
        ];
        for case in cases {
            assert_eq!(scan(&[case]), serde_says(case), "{case:?}");
        }
    }

    #[test]
    fn fragments_split_anywhere() {
        assert!(scan(&["{\"pa", "th\": \"a\\", "\"b\\u00", "e9\"", "}"]));
        assert!(!scan(&["{\"n\": 1", "2"]));
        assert!(scan(&["12", "3"]));
        assert!(!scan(&["12", "."]));
    }

    /// Pieces that make valid and invalid JSON alike.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "{", "}", "[", "]", ":", ",", " ", "\n", "\"", "\\", "\"k\"", "\"v\"", "0", "1", "-",
            ".", "e", "+", "true", "nul", "l", "false", "u", "00e9", "é", "\u{1}", "x", "{\"a\":",
            "[1,", "}]",
        ])
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e9f64..1e9).prop_map(serde_json::Value::from),
            ".{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".{0,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Every prefix, fed as the pieces arrived, gets serde's verdict.
        #[test]
        fn agrees_with_serde_on_every_prefix(pieces in prop::collection::vec(piece(), 0..24)) {
            let mut scan = JsonScan::default();
            let mut text = String::new();
            for piece in pieces {
                scan.feed(piece);
                text.push_str(piece);
                prop_assert_eq!(scan.is_complete(), serde_says(&text), "{:?}", text);
            }
        }

        /// A real value, cut at arbitrary points, is complete exactly when
        /// serde says so, and at the end.
        #[test]
        fn real_values_complete_at_the_end(
            value in json_value(),
            pretty in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let text = if pretty {
                serde_json::to_string_pretty(&value)
            } else {
                serde_json::to_string(&value)
            }.unwrap_or_default();
            let mut scan = JsonScan::default();
            let mut to = 0;
            for piece in split_at_points(&text, &cuts) {
                scan.feed(piece);
                to += piece.len();
                prop_assert_eq!(scan.is_complete(), serde_says(&text[..to]), "{:?}", &text[..to]);
            }
            prop_assert!(scan.is_complete(), "{:?}", text);
        }
    }
}
