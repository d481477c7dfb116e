//! Logging to stderr: `RUST_LOG` wins over `log.level`; text or JSON lines. Text lines cannot
//! be forged: every field value has its control characters escaped (a `%0A` in a query
//! parameter cannot start a fake line, nor an ESC sequence reach the terminal), and colours are
//! used only on a terminal. JSON escapes by itself.

use crate::settings::{LogFormat, LogSettings};
use std::fmt;
use std::io::IsTerminal;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{self, FormatFields, Writer};
use tracing_subscriber::EnvFilter;

pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = match settings.format {
        LogFormat::Text => builder.fmt_fields(EscapedFields).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Text fields as tracing's default formats them, with control characters escaped.
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut escaped = String::new();
        format::DefaultFields::new().format_fields(Writer::new(&mut escaped), fields)?;
        let mut writer = writer;
        write_escaped(&mut writer, &escaped)
    }
}

/// `text` with every control character written as its escape (`\n`, `\u{1b}`).
fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    for c in text.chars() {
        if c.is_control() {
            write!(out, "{}", c.escape_default())?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        write_escaped(&mut out, "x\n2026-01-01 ERROR forged\u{1b}[31m\r\t").unwrap();
        assert_eq!(out, "x\\n2026-01-01 ERROR forged\\u{1b}[31m\\r\\t");
        assert!(!out.chars().any(char::is_control));
    }
}
