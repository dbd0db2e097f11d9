//! The grammar of nginx `log_format` strings and of the CLI's format specs, written with nom.
//!
//! ```text
//! format   = element*
//! element  = variable / literal
//! variable = "$" ( "{" name "}" / name )
//! name     = [A-Za-z0-9_]+
//! literal  = [^$]+
//! ```
//!
//! nginx itself rejects a `$` that is not followed by a name, and `${name` without its `}`; so do we.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till1, take_while1};
use nom::character::complete::{char, multispace0, multispace1};
use nom::combinator::opt;
use nom::multi::many0;
use nom::sequence::{delimited, preceded, terminated};
use nom::{IResult, Parser};
use thiserror::Error;

use super::Escape;

/// Why a format string (or a CLI format spec) does not compile.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CompileError {
    /// A `$` with no variable name after it.
    #[error("format byte {offset}: \"$\" must be followed by a variable name ([A-Za-z0-9_]+) or {{name}}")]
    MissingName {
        /// Byte offset of the `$` in the format string.
        offset: usize,
    },
    /// `${name` without the closing `}`.
    #[error("format byte {offset}: the closing bracket of \"${{{name}\" is missing")]
    UnclosedBrace {
        /// Byte offset of the `$` in the format string.
        offset: usize,
        /// The name read so far.
        name: String,
    },
    /// Two variables with no literal text between them.
    #[error(
        "format byte {offset}: ${first} and ${second} have no literal text between them, so a \
         parser cannot tell where ${first} ends; put a separator (a tab, a space) between them"
    )]
    AdjacentVariables {
        /// The first variable.
        first: String,
        /// The variable right after it.
        second: String,
        /// Byte offset of the second variable's `$`.
        offset: usize,
    },
    /// A literal with a CR or LF: the access log is read one hit per line.
    #[error("format byte {offset}: the format contains a line break, but an access log is read one hit per line")]
    LineBreak {
        /// Byte offset of the line break.
        offset: usize,
    },
    /// The format string is empty.
    #[error("the format is empty")]
    Empty,
    /// An `escape=` parameter other than `default`, `json` or `none`.
    #[error("unknown escape {0:?}: expected escape=default, escape=json or escape=none")]
    UnknownEscape(String),
    /// A quoted string in a format spec that is never closed.
    #[error("format spec byte {offset}: the quoted string is not closed")]
    UnclosedQuote {
        /// Byte offset of the opening quote in the spec.
        offset: usize,
    },
    /// Text after the quoted strings of a format spec.
    #[error("format spec byte {offset}: unexpected text after the quoted format strings")]
    TrailingSpec {
        /// Byte offset of the unexpected text in the spec.
        offset: usize,
    },
}

/// One element of a format string, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Element<'s> {
    /// Literal text, copied to every line.
    Literal(&'s str),
    /// A variable reference, `$name` or `${name}`.
    Variable {
        /// The name without `$` and braces.
        name: &'s str,
        /// Byte offset of the `$` in the format.
        offset: usize,
    },
}

/// Is `c` allowed in an nginx variable name?
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `name = [A-Za-z0-9_]+`
fn name(input: &str) -> IResult<&str, &str> {
    take_while1(is_name_char).parse(input)
}

/// `variable = "$" ( "{" name "}" / name )`, returning the name.
fn variable(input: &str) -> IResult<&str, &str> {
    preceded(
        char('$'),
        alt((delimited(char('{'), name, char('}')), name)),
    )
    .parse(input)
}

/// `literal = [^$]+`
fn literal(input: &str) -> IResult<&str, &str> {
    take_till1(|c| c == '$').parse(input)
}

/// Splits a format string into its elements: `format = ( variable / literal )*`.
pub(crate) fn elements(format: &str) -> Result<Vec<Element<'_>>, CompileError> {
    let offset = |rest: &str| format.len() - rest.len();
    let element = alt((
        |i| {
            variable(i).map(|(rest, name)| {
                (
                    rest,
                    Element::Variable {
                        name,
                        offset: offset(i),
                    },
                )
            })
        },
        |i| literal(i).map(|(rest, text)| (rest, Element::Literal(text))),
    ));
    // Neither alternative can fail without a `$` being next, and nothing matches an empty input,
    // so many0 stops exactly at the end or at a bad `$`.
    let (rest, elements) = match many0(element).parse(format) {
        Ok(done) => done,
        Err(_) => return Err(CompileError::Empty),
    };
    if rest.is_empty() {
        return Ok(elements);
    }
    let at = offset(rest);
    Err(match rest.strip_prefix("${") {
        Some(braced) => {
            let name: String = braced.chars().take_while(|&c| is_name_char(c)).collect();
            if name.is_empty() {
                CompileError::MissingName { offset: at }
            } else {
                CompileError::UnclosedBrace { offset: at, name }
            }
        }
        None => CompileError::MissingName { offset: at },
    })
}

/// A CLI format spec, before compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec<'s> {
    /// The `escape=` parameter, if given.
    pub escape: Option<Escape>,
    /// What follows it.
    pub body: SpecBody<'s>,
}

/// The part of a spec after the `escape=` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SpecBody<'s> {
    /// A built-in format name: `canonical` or `combined`.
    Builtin(&'s str),
    /// A format string, with nginx's configuration escapes already resolved.
    Format(String),
}

/// `escape-param = "escape=" [a-z]+ ws`
fn escape_param(input: &str) -> IResult<&str, &str> {
    terminated(
        preceded(tag("escape="), take_while1(|c: char| !c.is_whitespace())),
        multispace1,
    )
    .parse(input)
}

/// `builtin = ( "canonical" / "combined" ) ws* [";"] ws* EOF`
fn builtin(input: &str) -> IResult<&str, &str> {
    let (rest, name) = alt((tag("canonical"), tag("combined"))).parse(input)?;
    let (rest, _) = (multispace0, opt(char(';')), multispace0).parse(rest)?;
    if rest.is_empty() {
        Ok((rest, name))
    } else {
        Err(nom::Err::Error(nom::error::Error::new(
            rest,
            nom::error::ErrorKind::Eof,
        )))
    }
}

/// Resolves nginx's configuration-file escapes in one word: `\t`, `\r`, `\n` become the control
/// characters, `\"`, `\'` and `\\` the character itself; any other backslash stays.
pub(crate) fn resolve_config_escapes(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mut ahead = chars.clone();
        match ahead.next() {
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(q @ ('"' | '\'' | '\\')) => out.push(q),
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars = ahead;
    }
    out
}

/// `quoted = "'" ( "\" any / [^'\] )* "'"`, or the same with `"`; returns the inside, unresolved.
fn quoted(input: &str) -> IResult<&str, &str> {
    let quote = match input.chars().next() {
        Some(q @ ('\'' | '"')) => q,
        _ => {
            return Err(nom::Err::Error(nom::error::Error::new(
                input,
                nom::error::ErrorKind::Char,
            )))
        }
    };
    let inner = &input[1..];
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == quote {
            return Ok((&inner[i + 1..], &inner[..i]));
        }
    }
    Err(nom::Err::Failure(nom::error::Error::new(
        input,
        nom::error::ErrorKind::Char,
    )))
}

/// Parses a CLI format spec:
///
/// ```text
/// spec   = ws* [ escape-param ] ( builtin / quoted ( ws* quoted )* ws* [";"] / raw ) ws*
/// raw    = any text; nginx's configuration escapes (\t, \", \\ …) are resolved in it
/// ```
pub(crate) fn spec(input: &str) -> Result<Spec<'_>, CompileError> {
    let offset = |rest: &str| input.len() - rest.len();
    let trimmed = input.trim_start();
    let (rest, escape) = match escape_param(trimmed) {
        Ok((rest, word)) => (rest.trim_start(), Some(word.parse::<Escape>()?)),
        Err(_) => (trimmed, None),
    };
    if let Ok((_, name)) = builtin(rest) {
        return Ok(Spec {
            escape,
            body: SpecBody::Builtin(name),
        });
    }
    if rest.starts_with(['\'', '"']) {
        let quoted_words = many0(preceded(multispace0, quoted)).parse(rest);
        let (after, words) = match quoted_words {
            Ok(done) => done,
            Err(nom::Err::Failure(e) | nom::Err::Error(e)) => {
                return Err(CompileError::UnclosedQuote {
                    offset: offset(e.input),
                })
            }
            Err(nom::Err::Incomplete(_)) => {
                return Err(CompileError::UnclosedQuote {
                    offset: offset(rest),
                })
            }
        };
        let after = match (multispace0, opt(char(';')), multispace0).parse(after) {
            Ok((after, _)) => after,
            Err::<_, nom::Err<nom::error::Error<&str>>>(_) => after,
        };
        if !after.is_empty() {
            return Err(CompileError::TrailingSpec {
                offset: offset(after),
            });
        }
        let format = words.iter().map(|w| resolve_config_escapes(w)).collect();
        return Ok(Spec {
            escape,
            body: SpecBody::Format(format),
        });
    }
    let raw = rest.trim_end();
    let raw = raw.strip_suffix(';').unwrap_or(raw);
    Ok(Spec {
        escape,
        body: SpecBody::Format(resolve_config_escapes(raw)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_variables_and_literals() {
        let els = elements("[$time_local] ${host}x$a_1").unwrap();
        assert_eq!(
            els,
            vec![
                Element::Literal("["),
                Element::Variable {
                    name: "time_local",
                    offset: 1
                },
                Element::Literal("] "),
                Element::Variable {
                    name: "host",
                    offset: 14
                },
                Element::Literal("x"),
                Element::Variable {
                    name: "a_1",
                    offset: 22
                },
            ]
        );
        assert_eq!(name("ab-c"), Ok(("-c", "ab")));
    }

    #[test]
    fn rejects_bad_dollars() {
        assert_eq!(
            elements("a $ b"),
            Err(CompileError::MissingName { offset: 2 })
        );
        assert_eq!(elements("a$"), Err(CompileError::MissingName { offset: 1 }));
        assert_eq!(
            elements("${}"),
            Err(CompileError::MissingName { offset: 0 })
        );
        assert_eq!(
            elements("x${host"),
            Err(CompileError::UnclosedBrace {
                offset: 1,
                name: "host".into()
            })
        );
        assert_eq!(
            elements("${ho-st}"),
            Err(CompileError::UnclosedBrace {
                offset: 0,
                name: "ho".into()
            })
        );
    }

    #[test]
    fn parses_specs() {
        let s = spec("canonical").unwrap();
        assert_eq!(
            s,
            Spec {
                escape: None,
                body: SpecBody::Builtin("canonical")
            }
        );
        let s = spec(" escape=json  combined ;").unwrap();
        assert_eq!(
            s,
            Spec {
                escape: Some(Escape::Json),
                body: SpecBody::Builtin("combined")
            }
        );
        let s = spec(r#"escape=none '$a\t' "$b\"" ;"#).unwrap();
        assert_eq!(
            s,
            Spec {
                escape: Some(Escape::None),
                body: SpecBody::Format("$a\t$b\"".into())
            }
        );
        let s = spec(r"$a\t$b \x").unwrap();
        assert_eq!(s.body, SpecBody::Format("$a\t$b \\x".into()));
        assert_eq!(
            spec("escape=xml $a"),
            Err(CompileError::UnknownEscape("xml".into()))
        );
        assert_eq!(spec("'$a"), Err(CompileError::UnclosedQuote { offset: 0 }));
        assert_eq!(
            spec("'$a' x"),
            Err(CompileError::TrailingSpec { offset: 5 })
        );
        assert_eq!(resolve_config_escapes(r"a\'b\\c\qd\"), "a'b\\c\\qd\\");
    }
}
