//! Text that comes from outside (a provider's error description, an API's `WWW-Authenticate`,
//! a request's method or path) cut to a bounded length before it is logged, stored or
//! reported, with a marker saying how much was cut: nobody without an account can grow a log
//! line, a stored reason or a report line without bound.

use std::borrow::Cow;

/// A field in a log line.
pub const LOG_FIELD: usize = 256;
/// A reason stored on an activity row or printed in the worker's report.
pub const REASON: usize = 512;

/// `text` when it is at most `max` bytes; else its first bytes (cut at a character boundary)
/// and `…[cut N bytes]`.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…[cut {} bytes]", &text[..end], text.len() - end))
}

/// [`bounded`] for an owned string, cut in place.
pub fn bound(mut text: String, max: usize) -> String {
    if text.len() > max {
        text = bounded(&text, max).into_owned();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_with_a_marker() {
        assert_eq!(bounded("invalid_grant", 20), "invalid_grant");
        let long = "x".repeat(30_000);
        let cut = bounded(&long, 256);
        assert!(cut.len() < 300, "{}", cut.len());
        assert!(cut.ends_with("…[cut 29744 bytes]"), "{cut}");
        assert_eq!(
            bound(long, 10),
            format!("{}…[cut 29990 bytes]", "x".repeat(10))
        );
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = "é".repeat(10); // two bytes each
        let cut = bounded(&text, 5);
        assert!(cut.starts_with("éé…"), "{cut}");
        assert!(cut.ends_with("[cut 16 bytes]"), "{cut}");
    }
}
