//! A JSON writer that reproduces Go's `encoding/json` output byte for byte.
//!
//! Wire format v1 hashes and stores JSON produced by Go (`json.Marshal` for the AAD, the state
//! hash and the identity fingerprint; `json.Encoder` with a two-space indent for the state and
//! checkpoint files). serde_json differs from Go in string escaping (Go escapes `<`, `>`, `&`,
//! U+2028 and U+2029) and in indentation details, so the byte-exact paths use this writer.

/// A JSON value in the small subset wire format v1 needs: objects keep their field order.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum GoValue {
    /// A string, escaped as Go does.
    Str(String),
    /// An unsigned integer.
    Unsigned(u64),
    /// A signed integer.
    Signed(i64),
    /// An object whose fields keep the given order.
    Object(Vec<(&'static str, Self)>),
    /// An array.
    Array(Vec<Self>),
}

impl GoValue {
    /// Shorthand for a string value.
    pub(crate) fn str(value: impl Into<String>) -> Self {
        Self::Str(value.into())
    }

    /// Renders compactly, as `json.Marshal` does.
    pub(crate) fn to_compact(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, None, 0);
        out
    }

    /// Renders as `json.Encoder` with `SetIndent("", "  ")` does, including the final newline.
    pub(crate) fn to_indented(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, Some("  "), 0);
        out.push('\n');
        out
    }

    fn write(&self, out: &mut String, indent: Option<&str>, depth: usize) {
        match self {
            Self::Str(text) => push_string(out, text),
            Self::Unsigned(number) => out.push_str(&number.to_string()),
            Self::Signed(number) => out.push_str(&number.to_string()),
            Self::Object(fields) => {
                if fields.is_empty() {
                    out.push_str("{}");
                    return;
                }
                out.push('{');
                for (index, (name, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    newline(out, indent, depth + 1);
                    push_string(out, name);
                    out.push(':');
                    if indent.is_some() {
                        out.push(' ');
                    }
                    value.write(out, indent, depth + 1);
                }
                newline(out, indent, depth);
                out.push('}');
            }
            Self::Array(items) => {
                if items.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    newline(out, indent, depth + 1);
                    item.write(out, indent, depth + 1);
                }
                newline(out, indent, depth);
                out.push(']');
            }
        }
    }
}

fn newline(out: &mut String, indent: Option<&str>, depth: usize) {
    if let Some(unit) = indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(unit);
        }
    }
}

/// Appends `text` as a JSON string literal with Go's escaping rules (HTML-safe mode, the
/// default for both `json.Marshal` and `json.Encoder`).
pub(crate) fn push_string(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Go 1.22 and later write these two with their short escapes.
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let code = ch as u32;
                out.push_str("\\u00");
                out.push(HEX[(code >> 4) as usize & 0xf] as char);
                out.push(HEX[code as usize & 0xf] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            other => out.push(other),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(text: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, text);
        out
    }

    #[test]
    fn html_characters_are_escaped_like_go() {
        assert_eq!(quoted("<a&b>"), r#""\u003ca\u0026b\u003e""#);
    }

    #[test]
    fn line_and_paragraph_separators_are_escaped_like_go() {
        assert_eq!(quoted("a\u{2028}b\u{2029}c"), r#""a\u2028b\u2029c""#);
    }

    #[test]
    fn control_characters_use_short_escapes_where_go_does() {
        assert_eq!(
            quoted("\n\r\t\u{8}\u{c}\u{1}\u{1f}"),
            r#""\n\r\t\b\f\u0001\u001f""#
        );
    }

    #[test]
    fn non_ascii_and_delete_pass_through() {
        assert_eq!(quoted("é☃\u{7f}"), "\"é☃\u{7f}\"");
    }

    #[test]
    fn indented_output_matches_go_encoder_layout() {
        let value = GoValue::Object(vec![
            ("a", GoValue::Unsigned(1)),
            (
                "b",
                GoValue::Array(vec![GoValue::Object(vec![("c", GoValue::str("d"))])]),
            ),
            ("e", GoValue::Array(vec![])),
        ]);
        let expected =
            "{\n  \"a\": 1,\n  \"b\": [\n    {\n      \"c\": \"d\"\n    }\n  ],\n  \"e\": []\n}\n";
        assert_eq!(value.to_indented(), expected);
        assert_eq!(value.to_compact(), r#"{"a":1,"b":[{"c":"d"}],"e":[]}"#);
    }
}
