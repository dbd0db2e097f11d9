//! The access-log format: plowline's contract between nginx and the processor.
//!
//! One canonical format, [`CANONICAL`], is defined here and nowhere else: the collector renders it
//! into nginx syntax with [`LogFormat::nginx_directive`], the `plow-collector serve` pixel server
//! writes it with [`LogFormat::write_line`], and the processor reads it back with
//! [`LogFormat::parse`] and [`Record::hit`]. Its fields are separated by TAB and escaped with nginx's
//! `escape=default`, which writes a TAB inside a value as `\x09`: every hit is one line and TAB is
//! an unambiguous separator.
//!
//! Any other nginx `log_format` string compiles into a parser too ([`LogFormat::compile`],
//! [`LogFormat::from_spec`]), as does nginx's built-in `combined` format, with `escape=default`,
//! `escape=json` or `escape=none`.
//!
//! ```
//! use plowline_collector::logformat::LogFormat;
//!
//! let format = LogFormat::canonical();
//! let mut line = Vec::new();
//! format.write_line(
//!     |var| match var {
//!         "msec" => Some(&b"1700000000.123"[..]),
//!         "request_method" => Some(b"GET"),
//!         "request_uri" => Some(b"/i?e=pv&page=Caf\xc3\xa9"),
//!         "http_user_agent" => Some(b"Mozilla/5.0 \"tab\there\""),
//!         _ => None,
//!     },
//!     &mut line,
//! );
//! let record = format.parse(&line).unwrap();
//! assert_eq!(record.raw_var("http_user_agent"), Some(&br"Mozilla/5.0 \x22tab\x09here\x22"[..]));
//! let hit = record.hit().unwrap();
//! assert_eq!(hit.collector_tstamp_ms, 1_700_000_000_123);
//! assert_eq!(hit.uri, &b"/i?e=pv&page=Caf\xc3\xa9"[..]);
//! assert_eq!(hit.user_agent.as_deref(), Some(&b"Mozilla/5.0 \"tab\there\""[..]));
//! assert_eq!(hit.referer, None);
//! ```

mod escape;
mod grammar;
mod hit;
mod record;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use memchr::memmem::Finder;

pub use escape::{escape_default, escape_json};
pub use grammar::CompileError;
pub use hit::Hit;
pub use record::{Expected, ParseError, Record, Snippet};

/// The canonical plowline access-log format, as an nginx `log_format` string (with real TAB
/// characters between the variables). Used with [`Escape::Default`].
///
/// `$uid_got`/`$uid_set` come from nginx's `userid` module; `$request_body` is the tp2 POST body.
pub const CANONICAL: &str = "$msec\t$remote_addr\t$http_x_forwarded_for\t$host\t$request_method\t\
$request_uri\t$status\t$http_referer\t$http_user_agent\t$uid_got\t$uid_set\t$request_id\t\
$request_body";

/// nginx's built-in `combined` format.
pub const COMBINED: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status \
$body_bytes_sent \"$http_referer\" \"$http_user_agent\"";

/// How nginx escapes variable values in a log line: the `escape=` parameter of `log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Escape {
    /// `escape=default`: `"`, `\`, control bytes, 0x7F and bytes from 0x80 as `\xHH`; a variable
    /// that is not set is written as `-`.
    #[default]
    Default,
    /// `escape=json`: JSON string escapes; a variable that is not set is written as nothing.
    Json,
    /// `escape=none`: values are written raw; a variable that is not set is written as nothing.
    None,
}

impl Escape {
    /// The name nginx uses in `escape=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Escape::Default => "default",
            Escape::Json => "json",
            Escape::None => "none",
        }
    }

    /// Appends `value` to `out` escaped for this mode.
    pub fn escape(self, value: &[u8], out: &mut Vec<u8>) {
        match self {
            Escape::Default => escape_default(value, out),
            Escape::Json => escape_json(value, out),
            Escape::None => out.extend_from_slice(value),
        }
    }

    /// What nginx writes for a variable that is not set.
    fn absent(self) -> &'static [u8] {
        match self {
            Escape::Default => b"-",
            Escape::Json | Escape::None => b"",
        }
    }
}

impl fmt::Display for Escape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Escape {
    type Err = CompileError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(Escape::Default),
            "json" => Ok(Escape::Json),
            "none" => Ok(Escape::None),
            _ => Err(CompileError::UnknownEscape(s.to_owned())),
        }
    }
}

/// A compiled nginx `log_format`: renders itself as an nginx directive, writes lines as nginx
/// would, and parses them back.
///
/// Cheap to clone (the compiled layout is shared). Two formats are equal when they have the same
/// escape mode, variables and literals (`$host` and `${HOST}` are the same).
#[derive(Clone)]
pub struct LogFormat(Arc<Layout>);

/// The compiled form of a format string.
#[derive(Debug)]
struct Layout {
    /// The format string as given.
    source: Box<str>,
    escape: Escape,
    /// `canonical` or `combined` for the built-in formats.
    builtin: Option<&'static str>,
    /// Literal text before the first variable (possibly empty).
    head: Literal,
    /// The variables in order, each with the literal that follows it. Only the last one's literal
    /// can be empty.
    vars: Box<[Var]>,
    /// Where the variables that [`Hit`] needs are.
    roles: hit::Roles,
}

/// A variable of a compiled format.
#[derive(Debug)]
struct Var {
    /// The name without `$`, lower-cased as nginx does.
    name: Box<str>,
    /// The literal text that follows the variable's value.
    tail: Literal,
}

/// Literal text of a format, with a searcher chosen for it.
#[derive(Debug)]
struct Literal {
    bytes: Box<[u8]>,
    search: Search,
}

/// How to find a literal in a line.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per literal of a format, built once; no indirection on the hot path"
)]
enum Search {
    /// The empty literal.
    Empty,
    /// A one-byte literal that cannot occur inside an escape sequence: `memchr`.
    Byte(u8),
    /// A longer literal that cannot begin inside an escape sequence: `memmem`.
    Substring(Finder<'static>),
    /// A literal that could begin inside an escape sequence (say `"` with `escape=json`, where a
    /// value holds `\"`): scan, stepping over escape sequences.
    SkipEscapes,
}

impl Literal {
    fn new(text: &str, escape: Escape) -> Literal {
        let bytes: Box<[u8]> = text.as_bytes().into();
        let search = match *bytes {
            [] => Search::Empty,
            [first, ..] if escape::may_start_inside_escape(first, escape) => Search::SkipEscapes,
            [only] => Search::Byte(only),
            _ => Search::Substring(Finder::new(&bytes).into_owned()),
        };
        Literal { bytes, search }
    }

    fn as_str(&self) -> &str {
        // Built from a `&str` in `Literal::new`.
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }
}

impl LogFormat {
    /// The canonical plowline format ([`CANONICAL`] with [`Escape::Default`]), compiled once.
    pub fn canonical() -> LogFormat {
        static CANONICAL_FORMAT: OnceLock<LogFormat> = OnceLock::new();
        CANONICAL_FORMAT
            .get_or_init(|| LogFormat::builtin("canonical", CANONICAL, Escape::Default))
            .clone()
    }

    /// nginx's built-in `combined` format ([`COMBINED`] with [`Escape::Default`]), compiled once.
    pub fn combined() -> LogFormat {
        static COMBINED_FORMAT: OnceLock<LogFormat> = OnceLock::new();
        COMBINED_FORMAT
            .get_or_init(|| LogFormat::builtin("combined", COMBINED, Escape::Default))
            .clone()
    }

    fn builtin(name: &'static str, source: &str, escape: Escape) -> LogFormat {
        LogFormat::compile_as(source, escape, Some(name)).expect("built-in formats compile")
    }

    /// Compiles an nginx `log_format` string (as nginx sees it, after the configuration file's own
    /// escapes such as `\t` are resolved) for the given escape mode.
    ///
    /// The format is `$var` and `${var}` references (names are `[A-Za-z0-9_]+`, case-insensitive as
    /// in nginx) and literal text. Fails on a `$` without a name, on `${` without `}`, on a line
    /// break, and on two variables with no literal between them, which no parser could split.
    pub fn compile(format: &str, escape: Escape) -> Result<LogFormat, CompileError> {
        LogFormat::compile_as(format, escape, None)
    }

    fn compile_as(
        format: &str,
        escape: Escape,
        builtin: Option<&'static str>,
    ) -> Result<LogFormat, CompileError> {
        let elements = grammar::elements(format)?;
        if elements.is_empty() {
            return Err(CompileError::Empty);
        }
        let mut head = None;
        let mut vars: Vec<(&str, Option<&str>)> = Vec::new();
        for element in elements {
            match element {
                grammar::Element::Literal(text) => {
                    if let Some(i) = text.find(['\n', '\r']) {
                        let offset = text.as_ptr() as usize - format.as_ptr() as usize + i;
                        return Err(CompileError::LineBreak { offset });
                    }
                    match vars.last_mut() {
                        Some((_, tail)) => *tail = Some(text),
                        None => head = Some(text),
                    }
                }
                grammar::Element::Variable { name, offset } => {
                    if let Some(&(first, None)) = vars.last() {
                        return Err(CompileError::AdjacentVariables {
                            first: first.to_owned(),
                            second: name.to_owned(),
                            offset,
                        });
                    }
                    vars.push((name, None));
                }
            }
        }
        let vars: Box<[Var]> = vars
            .into_iter()
            .map(|(name, tail)| Var {
                name: name.to_ascii_lowercase().into(),
                tail: Literal::new(tail.unwrap_or(""), escape),
            })
            .collect();
        let roles = hit::Roles::new(vars.iter().map(|v| &*v.name));
        Ok(LogFormat(Arc::new(Layout {
            source: format.into(),
            escape,
            builtin,
            head: Literal::new(head.unwrap_or(""), escape),
            vars,
            roles,
        })))
    }

    /// Compiles a format spec as given on the command line or in a config file:
    ///
    /// - `canonical` or `combined`;
    /// - a format string as in an nginx directive, whose configuration escapes (`\t`, `\"`, `\\`,
    ///   …) are resolved: either raw (`$remote_addr\t$request`) or as one or more quoted strings
    ///   (`'$remote_addr ' '"$request"'`), optionally ending with `;`;
    /// - either of them preceded by `escape=default `, `escape=json ` or `escape=none `.
    ///
    /// [`LogFormat`]'s `Display` writes a spec that reads back into an equal format.
    pub fn from_spec(spec: &str) -> Result<LogFormat, CompileError> {
        let spec = grammar::spec(spec)?;
        match spec.body {
            grammar::SpecBody::Builtin(name) => {
                let (source, base) = match name {
                    "combined" => (COMBINED, LogFormat::combined()),
                    _ => (CANONICAL, LogFormat::canonical()),
                };
                match spec.escape {
                    Some(escape) if escape != base.escape() => {
                        LogFormat::compile_as(source, escape, base.0.builtin)
                    }
                    _ => Ok(base),
                }
            }
            grammar::SpecBody::Format(format) => {
                LogFormat::compile(&format, spec.escape.unwrap_or_default())
            }
        }
    }

    /// The format string, as compiled.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// The escape mode.
    pub fn escape(&self) -> Escape {
        self.0.escape
    }

    /// The variables of the format in order, without `$`, lower-cased.
    pub fn variables(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.vars.iter().map(|v| &*v.name)
    }

    /// The position of a variable (given with or without `$`, in any case) among
    /// [`variables`](Self::variables); the first one if it occurs more than once.
    pub fn index_of(&self, var: &str) -> Option<usize> {
        let var = var.strip_prefix('$').unwrap_or(var);
        self.0
            .vars
            .iter()
            .position(|v| v.name.eq_ignore_ascii_case(var))
    }

    /// Renders the format as an nginx `log_format` directive, e.g.
    /// `log_format plowline escape=default '$msec\t$remote_addr…';`.
    ///
    /// The format goes in one single-quoted string, in which TAB is written `\t` and `'` and `\`
    /// are escaped with a backslash; a variable followed by a name character is written `${var}`.
    /// `name` is written as it is: it should be an nginx word such as `plowline`.
    pub fn nginx_directive(&self, name: &str) -> String {
        let mut out = format!("log_format {name} escape={} ", self.escape());
        self.write_quoted(&mut out);
        out.push(';');
        out
    }

    /// Writes the format as one single-quoted nginx configuration string.
    fn write_quoted(&self, out: &mut String) {
        fn push_literal(out: &mut String, text: &str) {
            for c in text.chars() {
                match c {
                    '\t' => out.push_str("\\t"),
                    '\'' => out.push_str("\\'"),
                    '\\' => out.push_str("\\\\"),
                    c => out.push(c),
                }
            }
        }
        out.push('\'');
        push_literal(out, self.0.head.as_str());
        for var in self.0.vars.iter() {
            let tail = var.tail.as_str();
            if tail.starts_with(grammar::is_name_char) {
                out.push_str("${");
                out.push_str(&var.name);
                out.push('}');
            } else {
                out.push('$');
                out.push_str(&var.name);
            }
            push_literal(out, tail);
        }
        out.push('\'');
    }

    /// Appends one log line to `out`, exactly as nginx would write it, ending with `\n`.
    ///
    /// `value` is asked for each variable by its lower-case name without `$` (`"remote_addr"`);
    /// `None` means the variable is not set and is written as nginx does (`-` with
    /// `escape=default`, nothing with `escape=json` and `escape=none`); a value is escaped for the format's escape mode.
    pub fn write_line<'v>(
        &self,
        mut value: impl FnMut(&str) -> Option<&'v [u8]>,
        out: &mut Vec<u8>,
    ) {
        let escape = self.0.escape;
        out.extend_from_slice(&self.0.head.bytes);
        for var in self.0.vars.iter() {
            match value(&var.name) {
                Some(v) => escape.escape(v, out),
                None => out.extend_from_slice(escape.absent()),
            }
            out.extend_from_slice(&var.tail.bytes);
        }
        out.push(b'\n');
    }

    /// Parses one log line written in this format. A trailing `\n` or `\r\n` is not part of the
    /// line.
    ///
    /// Each variable's value runs up to the first occurrence of the literal that follows it in the
    /// format (an occurrence inside an escape sequence does not count); the last variable takes the
    /// rest of the line. Escape sequences are checked here, so the record's accessors cannot fail.
    /// Never panics, whatever the bytes.
    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        record::parse(self, line)
    }
}

impl fmt::Debug for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogFormat")
            .field("source", &self.0.source)
            .field("escape", &self.0.escape)
            .finish()
    }
}

/// Writes the format as a spec that [`LogFormat::from_spec`] reads back: `canonical`,
/// `combined`, or the quoted format string, each preceded by `escape=…` unless it is the default.
impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.escape != Escape::Default {
            write!(f, "escape={} ", self.0.escape)?;
        }
        match self.0.builtin {
            Some(name) => f.write_str(name),
            None => {
                let mut quoted = String::with_capacity(self.0.source.len() + 2);
                self.write_quoted(&mut quoted);
                f.write_str(&quoted)
            }
        }
    }
}

impl PartialEq for LogFormat {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&*self.0, &*other.0);
        a.escape == b.escape
            && a.head.bytes == b.head.bytes
            && a.vars.len() == b.vars.len()
            && a.vars
                .iter()
                .zip(b.vars.iter())
                .all(|(a, b)| a.name == b.name && a.tail.bytes == b.tail.bytes)
    }
}

impl Eq for LogFormat {}

impl FromStr for LogFormat {
    type Err = CompileError;

    /// Same as [`LogFormat::from_spec`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogFormat::from_spec(s)
    }
}

impl serde::Serialize for LogFormat {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for LogFormat {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spec = String::deserialize(deserializer)?;
        LogFormat::from_spec(&spec).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_compile() {
        let canonical = LogFormat::canonical();
        assert_eq!(canonical.variables().len(), 13);
        assert_eq!(canonical.index_of("$request_uri"), Some(5));
        assert_eq!(canonical.index_of("REQUEST_BODY"), Some(12));
        assert_eq!(canonical.index_of("time_local"), None);
        assert_eq!(canonical.to_string(), "canonical");
        let combined = LogFormat::combined();
        assert_eq!(
            combined.variables().collect::<Vec<_>>(),
            [
                "remote_addr",
                "remote_user",
                "time_local",
                "request",
                "status",
                "body_bytes_sent",
                "http_referer",
                "http_user_agent"
            ]
        );
    }

    #[test]
    fn renders_nginx_directives() {
        expect_test::expect![[r#"log_format plowline escape=default '$msec\t$remote_addr\t$http_x_forwarded_for\t$host\t$request_method\t$request_uri\t$status\t$http_referer\t$http_user_agent\t$uid_got\t$uid_set\t$request_id\t$request_body';"#]]
            .assert_eq(&LogFormat::canonical().nginx_directive("plowline"));
        let json = LogFormat::compile(
            "{\"t\":\"$msec\",\"ua\":\"${http_user_agent}\",\"x\":\"${host}x\\'\"}",
            Escape::Json,
        )
        .unwrap();
        expect_test::expect![[r#"log_format j escape=json '{"t":"$msec","ua":"$http_user_agent","x":"${host}x\\\'"}';"#]]
            .assert_eq(&json.nginx_directive("j"));
        let none = LogFormat::compile("$a\t$b", Escape::None).unwrap();
        assert_eq!(
            none.nginx_directive("n"),
            r"log_format n escape=none '$a\t$b';"
        );
    }

    #[test]
    fn specs_round_trip_through_display() {
        for spec in [
            "canonical",
            "combined",
            "escape=json canonical",
            "escape=json '{\"a\":\"$a\",\"b\":\"${b}c\\\\\\'\"}'",
            "escape=none '$a\\t$b'",
            "'[$time_local] $request'",
        ] {
            let format = LogFormat::from_spec(spec).unwrap();
            assert_eq!(format.to_string(), spec);
            assert_eq!(LogFormat::from_spec(&format.to_string()).unwrap(), format);
        }
        let raw = LogFormat::from_spec(r"escape=json $msec\t$request;").unwrap();
        assert_eq!(
            (raw.source(), raw.escape()),
            ("$msec\t$request", Escape::Json)
        );
        let json_combined = LogFormat::from_spec("escape=json combined").unwrap();
        assert_eq!(json_combined.source(), COMBINED);
        assert_eq!(json_combined.escape(), Escape::Json);
    }

    #[test]
    fn rejects_ambiguous_formats() {
        let err = LogFormat::compile("$remote_addr ${host}$uri", Escape::Default).unwrap_err();
        expect_test::expect!["format byte 20: $host and $uri have no literal text between them, so a parser cannot tell where $host ends; put a separator (a tab, a space) between them"]
            .assert_eq(&err.to_string());
        let err = LogFormat::compile("$a\n$b", Escape::Default).unwrap_err();
        assert_eq!(err, CompileError::LineBreak { offset: 2 });
        assert_eq!(
            LogFormat::compile("", Escape::Default).unwrap_err(),
            CompileError::Empty
        );
    }

    #[test]
    fn writes_absent_values_as_nginx_does() {
        let format = LogFormat::compile("$a|$b|$c", Escape::Default).unwrap();
        let mut out = Vec::new();
        format.write_line(|v| (v == "b").then_some(&b""[..]), &mut out);
        assert_eq!(out, b"-||-\n");
        let format = LogFormat::compile("$a|$b", Escape::Json).unwrap();
        out.clear();
        format.write_line(|_| None, &mut out);
        assert_eq!(out, b"|\n");
    }

    #[test]
    fn serde_uses_specs() {
        let format: LogFormat = serde_json::from_str("\"escape=json combined\"").unwrap();
        assert_eq!(
            serde_json::to_string(&format).unwrap(),
            "\"escape=json combined\""
        );
        assert!(serde_json::from_str::<LogFormat>("\"$a$b\"").is_err());
    }
}
